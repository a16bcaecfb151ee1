package main

import (
	"io"
	"strconv"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"tungate/admin"
	"tungate/conntrack"
)

// filterFlags are conntrack(8)'s filter parameters.
type filterFlags struct {
	family, proto                        string
	src, dst, replySrc, replyDst         string
	sport, dport, replySport, replyDport string
	state, status                        []string
	srcNAT, dstNAT, anyNAT               bool
	mark, helper, id                     string
}

// alias adds a hidden second long name for a flag (conntrack's synonyms).
func alias(fs *pflag.FlagSet, name, to string) {
	f := fs.Lookup(to)
	fs.Var(f.Value, name, f.Usage)
	fs.MarkHidden(name)
}

const filterHelp = `
Filters (as conntrack(8); all given must match; addresses take CIDR prefixes):
  -f, --family ipv4|ipv6     -p, --proto NAME|NUMBER
  -s, --src ADDR  -d, --dst ADDR            original direction
  -r, --reply-src ADDR  -q, --reply-dst ADDR  reply direction
  --sport, --dport, --reply-port-src, --reply-port-dst PORT
  --state STATE,…            TCP/SCTP state: ESTABLISHED, TIME_WAIT, …
  -u, --status STATUS[,…]    ASSURED SEEN_REPLY UNREPLIED EXPECTED SNAT DNAT …
  -n, --src-nat  -g, --dst-nat  -j, --any-nat
  -m, --mark MARK[/MASK]     --helper NAME     --id ID`

func (f *filterFlags) add(cmd *cobra.Command, expect bool) {
	fs := cmd.Flags()
	fs.StringVarP(&f.family, "family", "f", "", "address `family`: ipv4 or ipv6")
	fs.StringVarP(&f.proto, "proto", "p", "", "layer 4 `protocol` (name or number)")
	fs.StringVar(&f.helper, "helper", "", "helper `name` (ftp, tftp, …)")
	fs.StringVar(&f.id, "id", "", "the entry's `id` (-o id shows it)")
	if expect {
		fs.StringVar(&f.src, "tuple-src", "", "expected source `address` or prefix")
		fs.StringVar(&f.dst, "tuple-dst", "", "expected destination `address` or prefix")
		fs.StringVar(&f.sport, "sport", "", "expected source `port`")
		fs.StringVar(&f.dport, "dport", "", "expected destination `port`")
	} else {
		fs.StringVarP(&f.src, "src", "s", "", "original source `address` or prefix")
		alias(fs, "orig-src", "src")
		fs.StringVarP(&f.dst, "dst", "d", "", "original destination `address` or prefix")
		alias(fs, "orig-dst", "dst")
		fs.StringVarP(&f.replySrc, "reply-src", "r", "", "reply source `address` or prefix")
		fs.StringVarP(&f.replyDst, "reply-dst", "q", "", "reply destination `address` or prefix")
		fs.StringVar(&f.sport, "sport", "", "original source `port`")
		alias(fs, "orig-port-src", "sport")
		fs.StringVar(&f.dport, "dport", "", "original destination `port`")
		alias(fs, "orig-port-dst", "dport")
		fs.StringVar(&f.replySport, "reply-port-src", "", "reply source `port`")
		fs.StringVar(&f.replyDport, "reply-port-dst", "", "reply destination `port`")
		fs.StringSliceVar(&f.state, "state", nil, "protocol `states`, e.g. ESTABLISHED,TIME_WAIT")
		fs.StringSliceVarP(&f.status, "status", "u", nil, "`status` bits that must all be set: "+strings.Join(admin.StatusNames(), ","))
		fs.BoolVarP(&f.srcNAT, "src-nat", "n", false, "source-NATed connections")
		fs.BoolVarP(&f.dstNAT, "dst-nat", "g", false, "destination-NATed connections")
		fs.BoolVarP(&f.anyNAT, "any-nat", "j", false, "connections with any NAT")
		fs.StringVarP(&f.mark, "mark", "m", "", "connection `mark[/mask]`")
		cmd.RegisterFlagCompletionFunc("state", cobra.FixedCompletions(conntrack.StateNames(), cobra.ShellCompDirectiveNoFileComp))
		cmd.RegisterFlagCompletionFunc("status", cobra.FixedCompletions(admin.StatusNames(), cobra.ShellCompDirectiveNoFileComp))
	}
	cmd.RegisterFlagCompletionFunc("family", cobra.FixedCompletions([]string{"ipv4", "ipv6"}, cobra.ShellCompDirectiveNoFileComp))
	cmd.RegisterFlagCompletionFunc("proto", cobra.FixedCompletions(admin.ProtoNames(), cobra.ShellCompDirectiveNoFileComp))
}

func parsePort(name, s string) (*uint16, error) {
	if s == "" {
		return nil, nil
	}
	v, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		return nil, usageErr("--%s: %q is not a port (0-65535)", name, s)
	}
	p := uint16(v)
	return &p, nil
}

// filter builds and checks the request's filter.
func (f *filterFlags) filter() (*admin.Filter, error) {
	out := &admin.Filter{Family: f.family, Proto: f.proto, Src: f.src, Dst: f.dst, ReplySrc: f.replySrc,
		ReplyDst: f.replyDst, State: f.state, Status: f.status, AnyNAT: f.anyNAT, Mark: f.mark, Helper: f.helper}
	if f.srcNAT {
		out.Status = append(out.Status, "SNAT")
	}
	if f.dstNAT {
		out.Status = append(out.Status, "DNAT")
	}
	var err error
	for _, p := range []struct {
		name string
		s    string
		dst  **uint16
	}{{"sport", f.sport, &out.Sport}, {"dport", f.dport, &out.Dport},
		{"reply-port-src", f.replySport, &out.ReplySport}, {"reply-port-dst", f.replyDport, &out.ReplyDport}} {
		if *p.dst, err = parsePort(p.name, p.s); err != nil {
			return nil, err
		}
	}
	if out.ID, err = parseID(f.id); err != nil {
		return nil, err
	}
	if err := out.Validate(); err != nil {
		return nil, usageErr("%v", err)
	}
	if out.Empty() {
		return nil, nil
	}
	return out, nil
}

func newCtCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	ct := &cobra.Command{
		Use:     "ct",
		Short:   "Inspect and change the connection table (like conntrack)",
		GroupID: "admin",
		Long: `List, count, delete, flush and watch the running gateway's connection
tracking table, with conntrack(8)'s filters and output formats.`,
		Args: cobra.ArbitraryArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if len(args) > 0 {
				return usageErr("ct: unknown subcommand %q (see tungate ct --help)", args[0])
			}
			return cmd.Help()
		},
	}
	addTargetFlags(ct, &t)

	// list, count, delete share the filter flags.
	listLike := func(use, short, long, cmdName string, formats []string) *cobra.Command {
		var f filterFlags
		var out string
		c := &cobra.Command{
			Use:   use,
			Short: short,
			Long:  long + "\n" + filterHelp,
			Args:  cobra.NoArgs,
			RunE: func(cmd *cobra.Command, args []string) error {
				if err := checkOutput(out, formats...); err != nil {
					return err
				}
				flt, err := f.filter()
				if err != nil {
					return err
				}
				if cmdName == "ct delete" && flt == nil {
					return usageErr("ct delete needs a filter or --id (ct flush deletes everything)")
				}
				return t.do(&admin.Request{Cmd: cmdName, Output: textless(out), Filter: flt}, stdout, stderr)
			},
		}
		f.add(c, false)
		outputFlag(c, &out, formats...)
		return c
	}
	list := listLike("list [filters]", "List connections (conntrack -L)",
		`List the connections in conntrack -L's line format (-o json: a JSON array,
one object per line; -o id: the line with each entry's id=). The list
streams: a million entries never sit in memory, and listing never holds up
the datapath.`, "ct list", []string{"text", "json", "id"})
	list.Aliases = []string{"ls", "dump"}
	count := listLike("count [filters]", "Count connections (conntrack -C)",
		"Print how many connections match the filters (all of them without filters).", "ct count", []string{"text", "json"})
	del := listLike("delete filters|--id ID", "Delete connections (conntrack -D)",
		`Delete the connections the filters (or --id) select and print each deleted
entry; the number deleted goes to stderr. At least one filter is required.`, "ct delete", []string{"text", "json", "id"})
	del.Aliases = []string{"rm"}

	var ef filterFlags
	var eout string
	var etypes []string
	events := &cobra.Command{
		Use:   "events [filters]",
		Short: "Watch connection events (conntrack -E)",
		Long: `Stream connection events as conntrack -E prints them ([NEW], [UPDATE],
[DESTROY]) until interrupted; -e picks the types. The gateway never waits for
this reader: if it falls more than a few thousand events behind, the excess is
dropped and a "[LOST] N events lost" line (-o json: {"type":"LOST"}) says so.
` + filterHelp,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(eout, "text", "json", "id"); err != nil {
				return err
			}
			flt, err := ef.filter()
			if err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "ct events", Output: textless(eout), Filter: flt, Events: etypes}, stdout, stderr)
		},
	}
	ef.add(events, false)
	outputFlag(events, &eout, "text", "json", "id")
	events.Flags().StringSliceVarP(&etypes, "event-mask", "e", nil, "event `types`: NEW, UPDATE, DESTROY (default all)")
	events.RegisterFlagCompletionFunc("event-mask", cobra.FixedCompletions([]string{"NEW", "UPDATE", "DESTROY", "ALL"}, cobra.ShellCompDirectiveNoFileComp))
	events.Aliases = []string{"watch"}

	flush := &cobra.Command{
		Use:   "flush",
		Short: "Delete every connection (conntrack -F)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return t.do(&admin.Request{Cmd: "ct flush"}, stdout, stderr)
		},
	}
	var sout string
	stats := &cobra.Command{
		Use:   "stats",
		Short: "Show the table's counters (conntrack -S)",
		Long: `Print the conntrack -S line (found, invalid, insert, insert_failed, drop,
early_drop, error: the counters tungate really counts), then the table's own
counters: entries, max, expectations, expect_new/create/delete, delete,
ignore, events_lost.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkOutput(sout, "text", "json"); err != nil {
				return err
			}
			return t.do(&admin.Request{Cmd: "ct stats", Output: textless(sout)}, stdout, stderr)
		},
	}
	outputFlag(stats, &sout, "text", "json")
	// ct expect is the old name of expect list (the conformance suite's).
	legacyExpect := newExpectListCmd(&t, stdout, stderr)
	legacyExpect.Use = "expect"
	legacyExpect.Hidden = true
	ct.AddCommand(list, count, del, events, flush, stats, legacyExpect)
	return ct
}
