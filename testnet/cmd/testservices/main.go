// Command testservices runs the test network's web server and chive.test DNS
// zone as their own process (the docker compose network's "web" service).
package main

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/signal"
	"syscall"

	"github.com/chive-net/chive/testnet/services"
)

func main() {
	web := flag.String("web", ":80", "web server listen address")
	dnsAddr := flag.String("dns", ":53", "DNS server listen address (UDP and TCP)")
	zoneAddr := flag.String("zone-addr", "", "address the zone's names point at (default: this host's first non-loopback IPv4)")
	flag.Parse()

	addr, err := pickAddr(*zoneAddr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testservices:", err)
		os.Exit(2)
	}
	s, err := services.Start(*web, *dnsAddr, addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "testservices:", err)
		os.Exit(1)
	}
	fmt.Printf("web on %s, DNS on %s, %s -> %s\n", s.Web, s.DNS, services.WebHost, addr)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGINT, syscall.SIGTERM)
	<-sig
	s.Close()
}

func pickAddr(flagVal string) (netip.Addr, error) {
	if flagVal != "" {
		a, err := netip.ParseAddr(flagVal)
		if err != nil {
			return netip.Addr{}, fmt.Errorf("-zone-addr: %w", err)
		}
		return a, nil
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return netip.Addr{}, err
	}
	for _, a := range addrs {
		if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() && !p.Addr().IsLoopback() {
			return p.Addr(), nil
		}
	}
	return netip.MustParseAddr("127.0.0.1"), nil
}
