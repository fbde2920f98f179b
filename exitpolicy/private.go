package exitpolicy

import (
	"net/netip"
	"slices"
)

// privateV4 are the IPv4 ranges an exit must never connect to on a client's
// behalf: they reach the exit's own host or network, not the Internet.
var privateV4 = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),      // "this network", includes the unspecified address (RFC 1122)
	netip.MustParsePrefix("10.0.0.0/8"),     // private (RFC 1918)
	netip.MustParsePrefix("100.64.0.0/10"),  // carrier-grade NAT shared space (RFC 6598)
	netip.MustParsePrefix("127.0.0.0/8"),    // loopback
	netip.MustParsePrefix("169.254.0.0/16"), // link-local (RFC 3927)
	netip.MustParsePrefix("172.16.0.0/12"),  // private (RFC 1918)
	netip.MustParsePrefix("192.168.0.0/16"), // private (RFC 1918)
	netip.MustParsePrefix("224.0.0.0/4"),    // multicast
	netip.MustParsePrefix("240.0.0.0/4"),    // reserved, includes broadcast 255.255.255.255
}

// privateV6 is the same for IPv6.
var privateV6 = []netip.Prefix{
	netip.MustParsePrefix("::/128"),    // unspecified
	netip.MustParsePrefix("::1/128"),   // loopback
	netip.MustParsePrefix("fe80::/10"), // link-local
	netip.MustParsePrefix("fc00::/7"),  // unique local (RFC 4193)
	netip.MustParsePrefix("ff00::/8"),  // multicast
	netip.MustParsePrefix("fec0::/10"), // deprecated site-local (RFC 3879)
}

// nat64 is the well-known NAT64 prefix (RFC 6052). On a network with a NAT64
// gateway, 64:ff9b::a00:1 reaches 10.0.0.1, so every private IPv4 range is
// also rejected in its NAT64 form. (6to4, 2002::/16, is not: its relay
// delivers to the IPv4 address on the far side, not into the exit's network.)
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// privateAll is every special range, IPv4 first, as prefixes.
var privateAll = func() []netip.Prefix {
	out := slices.Clone(privateV4)
	out = append(out, privateV6...)
	base := nat64.Addr().As16()
	for _, p := range privateV4 {
		a := base
		v4 := p.Addr().As4()
		copy(a[12:], v4[:])
		out = append(out, netip.PrefixFrom(netip.AddrFrom16(a), 96+p.Bits()))
	}
	return out
}()

// IsPrivate reports whether addr is in one of the ranges RejectPrivate
// rejects (not counting the relay's own addresses): private, loopback,
// link-local, unspecified, multicast, carrier-grade NAT, reserved (240/4),
// unique-local, deprecated site-local, and the NAT64 forms of the IPv4
// ranges.
// IPv4-mapped IPv6 addresses are judged as IPv4. Invalid addresses count as
// private.
func IsPrivate(addr netip.Addr) bool {
	if !addr.IsValid() {
		return true
	}
	addr = addr.Unmap().WithZone("")
	for _, p := range privateAll {
		if p.Contains(addr) {
			return true
		}
	}
	return false
}

// isPrivatePrefix reports whether every address of p lies inside one special
// range.
func isPrivatePrefix(p netip.Prefix) bool {
	for _, q := range privateAll {
		if q.Bits() <= p.Bits() && q.Contains(p.Addr()) {
			return true
		}
	}
	return false
}

// RejectPrivate returns the rules an exit puts at the front of its policy:
// reject every private/special range (see IsPrivate) on all ports, then
// reject each of own, the relay's own addresses (invalid ones are skipped,
// duplicates and addresses already covered are dropped).
func RejectPrivate(own ...netip.Addr) []Rule {
	rules := make([]Rule, 0, len(privateAll)+len(own))
	for _, p := range privateAll {
		rules = append(rules, Rule{Action: Reject, Addr: p, Ports: AllPorts})
	}
	seen := make(map[netip.Addr]bool, len(own))
	for _, a := range own {
		if !a.IsValid() {
			continue
		}
		a = a.Unmap().WithZone("")
		if seen[a] || IsPrivate(a) {
			continue
		}
		seen[a] = true
		rules = append(rules, Rule{Action: Reject, Addr: netip.PrefixFrom(a, a.BitLen()), Ports: AllPorts})
	}
	return rules
}

// WithRejectPrivate returns p with RejectPrivate(own...) placed before its
// rules. This is what an exit publishes and enforces unless its
// configuration explicitly opts out (a test network on loopback).
func (p Policy) WithRejectPrivate(own ...netip.Addr) Policy {
	return p.Prepend(RejectPrivate(own...)...)
}
