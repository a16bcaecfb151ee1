package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"

	"github.com/spf13/cobra"

	"tungate/admin"
	"tungate/internal/pcapng"
	"tungate/packet"
)

func newCaptureCmd(stdout, stderr io.Writer) *cobra.Command {
	var t target
	var file string
	var count int
	var m admin.CaptureMatch
	cmd := &cobra.Command{
		Use:     "capture INTERFACE",
		Short:   "Record an interface's packets (pcapng), with each packet's verdict",
		GroupID: "admin",
		Long: `Record the packets of one interface of the running gateway: those read from
it, each with what became of it (accept: forwarded to wan, drop: filter,
reject, ...) as a pcapng packet comment, and those written to it; the
direction is in each packet's flags (epb_flags). It works for every kind of
interface, also those no tcpdump can open (uplink, wireguard), because it
records in the gateway's datapath.

-w FILE writes pcapng (- for stdout; wireshark shows the comments, tcpdump
-r reads it); without -w a line per packet is printed. It runs until
Ctrl-C or --count packets. A reader too slow for the traffic loses packets,
never the gateway's time: the losses are counted in the file (each packet's
epb_dropcount and a closing statistics block) and on stderr. -c is the
config file, as for every admin command, so the count is --count.

--host, --proto and --port record only the packets that match all of them
(tcpdump's "host H and proto P and port N"), tested on the packet as it
crossed the interface: as read, or as written after NAT.`,
		Example: `  tungate capture wan -w wan.pcapng
  tungate capture lan --count 10
  tungate capture wan --proto udp --port 53 -w dns.pcapng`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if count < 0 {
				return usageErr("--count: %d is negative", count)
			}
			req := &admin.Request{Cmd: "capture", Interface: args[0], Count: count}
			if m != (admin.CaptureMatch{}) {
				req.Match = &m
			}
			switch file {
			case "":
				return captureText(&t, req, stdout, stderr)
			case "-":
				return t.do(req, stdout, stderr)
			}
			f, err := os.Create(file)
			if err != nil {
				return &exitError{code: 1, err: err}
			}
			err = t.do(req, f, stderr)
			if cerr := f.Close(); err == nil && cerr != nil {
				err = &exitError{code: 1, err: cerr}
			}
			return err
		},
	}
	addTargetFlags(cmd, &t)
	cmd.Flags().StringVarP(&file, "write", "w", "", "write pcapng to `file` (- for stdout)")
	cmd.Flags().IntVar(&count, "count", 0, "stop after `n` packets (default: until interrupted)")
	cmd.Flags().StringVar(&m.Host, "host", "", "only packets from or to this `address` or prefix")
	cmd.Flags().StringVar(&m.Proto, "proto", "", "only this `protocol` (tcp, udp, icmp or a number)")
	cmd.Flags().IntVar(&m.Port, "port", 0, "only TCP/UDP packets from or to this `port`")
	cmd.MarkFlagFilename("write", "pcapng")
	return cmd
}

// captureText prints one line per captured packet, tcpdump-like, from the
// pcapng stream.
func captureText(t *target, req *admin.Request, stdout, stderr io.Writer) error {
	pr, pw := io.Pipe()
	done := make(chan error, 1)
	go func() {
		done <- printCapture(pr, stdout)
		pr.CloseWithError(io.EOF)
	}()
	err := t.do(req, pw, stderr)
	pw.Close()
	if perr := <-done; err == nil && perr != nil && !errors.Is(perr, io.EOF) {
		err = &exitError{code: 1, err: perr}
	}
	return err
}

func printCapture(r io.Reader, w io.Writer) error {
	rd, err := pcapng.NewReader(r)
	if err != nil {
		return err
	}
	var p packet.Parsed
	var b []byte
	for {
		pk, err := rd.Next()
		if err != nil {
			return err
		}
		b = b[:0]
		b = pk.Time.AppendFormat(b, "15:04:05.000000")
		b = append(b, ' ')
		b = append(b, fmt.Sprintf("%-3s ", pk.Dir)...)
		if err := p.Decode(pk.Data); err != nil {
			b = append(b, "bad packet: "...)
			b = append(b, err.Error()...)
		} else {
			b = appendPacketLine(b, &p)
		}
		if pk.Comment != "" && pk.Comment != "sent" {
			b = append(b, " ["...)
			b = append(b, pk.Comment...)
			b = append(b, ']')
		}
		if pk.Drops > 0 {
			b = append(b, " ("...)
			b = strconv.AppendUint(b, pk.Drops, 10)
			b = append(b, " packets lost before this one)"...)
		}
		b = append(b, '\n')
		if _, err := w.Write(b); err != nil {
			return err
		}
	}
}

// appendPacketLine writes a packet's addresses and protocol in tcpdump's
// manner.
func appendPacketLine(b []byte, p *packet.Parsed) []byte {
	if p.Version == 6 {
		b = append(b, "IP6 "...)
	} else {
		b = append(b, "IP "...)
	}
	ports := p.HasL4 && (p.Proto == packet.ProtoTCP || p.Proto == packet.ProtoUDP)
	b = p.SrcIP().AppendTo(b)
	if ports {
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(p.SrcPort), 10)
	}
	b = append(b, " > "...)
	b = p.DstIP().AppendTo(b)
	if ports {
		b = append(b, '.')
		b = strconv.AppendUint(b, uint64(p.DstPort), 10)
	}
	b = append(b, ": "...)
	switch {
	case p.Proto == packet.ProtoTCP:
		b = append(b, "TCP"...)
	case p.Proto == packet.ProtoUDP:
		b = append(b, "UDP"...)
	case p.IsICMP():
		b = append(b, "ICMP type "...)
		b = strconv.AppendUint(b, uint64(p.ICMPType), 10)
	default:
		b = append(b, "proto "...)
		b = strconv.AppendUint(b, uint64(p.Proto), 10)
	}
	b = append(b, ", length "...)
	return strconv.AppendInt(b, int64(p.Len()), 10)
}
