// Package rules is tungate's rule language: nftables-like filter and raw
// chains written in TOML, compiled once into an evaluator that every packet
// runs through.
//
// Compile validates the whole configuration up front (every error names its
// key path and quotes its value) and produces an immutable Ruleset. The
// gateway swaps Rulesets through an atomic pointer on reload; Compile
// touches no global state, so two configurations can be compiled side by
// side.
//
// # Chains
//
// [filter.input] sees packets to the gateway's own addresses,
// [filter.forward] packets through it, [filter.output] packets the gateway
// generates; [raw.prerouting] runs before connection tracking (notrack).
// Base chains have a policy (accept, the default, or drop). User chains
// under [filter.chains.NAME] are reached by jump or goto.
//
// Evaluation is nftables': rules run in order; a rule's matches are ANDed;
// accept, drop and reject end the hook (also from a user chain); jump
// pushes a return point, goto does not; return, or running out of rules,
// goes back to the last jump, or applies the base chain's policy. A rule
// without action decides nothing and the next rule runs. Jumps nest at most
// 16 deep and may not loop.
//
// # Matches
//
// A list means any of its entries; "!" negates one entry; a list of negated
// entries matches when none of them does (nft's != { … }). A list mixing
// both matches one of the positive entries and none of the negated ones.
//
//	family        "ip" | "ip6"
//	in, out       interface names (in: not in output; out: not in input or raw)
//	peer          WireGuard peer names or "@peer_set": the peer that sent
//	              the packet (the one of its input interface whose
//	              allowed_ips hold its source); a packet from no peer
//	              matches only a list of negated entries
//	src, dst      CIDRs, bare addresses or "@set" (host bits must be zero)
//	proto         names from /etc/protocols (icmpv6 for ICMPv6) or numbers
//	sport, dport  80, "80", "1024-65535", "!53", or a list; only TCP and UDP
//	              packets with a transport header have ports, so any port
//	              match, negated or not, fails on others
//	icmp_type     names read under the rule's proto (icmp or icmpv6), or numbers
//	icmp_code     numbers
//	tcp_flags     "syn,!ack": listed flags set, "!" flags clear; list = any
//	length        the IP packet's length: 100, "100-200", "!0-64"
//	mark, ct_mark integers (or "0x…" strings)
//	ct_state      new, established, related, invalid, untracked
//	ct_status     expected, seen_reply, assured, confirmed, snat, dnat, dying;
//	              a list matches any of the bits
//	ct_direction  "original" | "reply"
//	ct_helper     a helper name
//	limit         "50/second" (minute, hour, day, week; "over 50/second"
//	              matches the excess), burst = N packets (default 5); only
//	              packets that pass the rule's other matches spend tokens
//
// ct_* matches other than ct_state need a connection: they never match an
// INVALID or UNTRACKED packet, and are not available in raw.prerouting.
//
// # Actions and statements
//
// action = accept | drop | reject | synproxy | jump | goto | return | notrack.
// reject_with = tcp-reset | icmp-port-unreachable | icmp-host-unreachable |
// icmp-admin-prohibited | icmpv6-port-unreachable | icmpv6-addr-unreachable |
// icmpv6-admin-prohibited; as in nft, an icmp type implies the family and
// tcp-reset implies proto tcp. Plain reject answers TCP with a RST and
// anything else with a port unreachable of its family. jump and goto need
// chain = "NAME". notrack (raw.prerouting only) is, like nft's, a statement:
// evaluation goes on to a later verdict or the policy.
//
// synproxy (filter.forward, proto = "tcp") is nft's synproxy statement and
// pf's synproxy state: the gateway answers the SYN itself with a SYN
// cookie and keeps nothing, and only a client that returns the cookie gets
// a connection to the server (the gateway's SynProxy verdict; the
// handshake and the translation are the gateway's). Options: synproxy =
// { mss = N (default: the links' MTU), wscale = N (10), timestamp = bool
// (true), sack_perm = bool (true) }. Put it after the established rule and
// match ct_state new: the client's handshake ACK arrives as a new
// connection (loose pickup), as in Linux.
//
// Statements run when the rule matches, after its counter: log = "prefix "
// (structured zap fields, at most 10 lines a second per rule), set_mark,
// set_ct_mark, helper = "ftp" (on a NEW connection: the gateway assigns it),
// clamp_mss = "rt" | N (nft's tcp option maxseg size set rt mtu: a
// forwarded TCP SYN's MSS option is lowered to the output link's MTU less
// 40 or 60 bytes, or to N; never raised; the last matching rule decides).
// Every rule counts packets and bytes.
//
// # Sets
//
// [sets] NAME = [CIDRs…] (both families in one set) are bart tables: a
// lookup costs the same for ten prefixes or a hundred thousand. Rules read
// a set through an atomic pointer, so RuntimeSets can add and delete
// elements while packets flow (setruntime.go).
// [peer_sets] NAME = [peer names…] group WireGuard peers for peer =
// "@NAME"; they are a table apart because their entries are names, not
// addresses. A name means that peer on every wireguard interface that has
// one by that name. A peer match compiles to a bitset of peer indexes per
// input interface: the gateway looks the sender up once per packet
// (Packet.Peer) and the rule tests a bit.
//
// # Evaluation cost
//
// Compiled rules are flat structs tested with a bit mask of the matches they
// carry: no map lookups by name, no string work (but for ct_helper's name
// compare), no allocation. Runs of rules that differ only in addresses and
// ports are indexed (see index.go) without changing which rule matches
// first.
package rules
