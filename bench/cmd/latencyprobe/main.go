// Command latencyprobe splits the time to first byte through a SOCKS5 proxy
// into its phases, and measures what waking an idle process costs on this
// machine, the floor under every hop of a circuit.
//
//	latencyprobe socks -proxy 127.0.0.1:9050 -url-host www.chive.test -port 8080
//	latencyprobe wake
//
// socks makes -n requests (after one warm-up), each on a fresh connection
// with the same SOCKS username (so the proxy uses one ready circuit), -gap
// apart, and prints the median of each phase: TCP connect to the proxy,
// SOCKS greeting and username/password authentication, the CONNECT
// request until the proxy's reply (one circuit round trip plus the exit's
// connect), and the HTTP request until the first response byte (one
// circuit round trip plus the server). wake starts a one-byte echo server
// in a child process and times round trips after an idle gap and back to
// back: the difference is two wake-ups of idle processes.
package main

import (
	"bufio"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"slices"
	"strconv"
	"time"

	"github.com/chive-net/chive/bench/socks5"
)

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: latencyprobe socks|wake [flags]  (-h for flags)")
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "socks":
		err = socksMain(os.Args[2:])
	case "wake":
		err = wakeMain(os.Args[2:])
	case "echo-server":
		err = echoServer(os.Args[2:])
	default:
		err = fmt.Errorf("unknown mode %q: use socks or wake", os.Args[1])
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "latencyprobe:", err)
		os.Exit(1)
	}
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

func median(x []float64) float64 {
	s := slices.Clone(x)
	slices.Sort(s)
	return s[len(s)/2]
}

func socksMain(args []string) error {
	fs := flag.NewFlagSet("latencyprobe socks", flag.ContinueOnError)
	proxy := fs.String("proxy", "127.0.0.1:9050", "SOCKS5 proxy address")
	host := fs.String("url-host", "www.chive.test", "host name sent to the proxy (resolved by the exit)")
	port := fs.Int("port", 80, "destination port")
	path := fs.String("path", "/", "HTTP path to GET")
	user := fs.String("user", "latencyprobe", "SOCKS username (one circuit for all requests)")
	n := fs.Int("n", 30, "requests to time")
	gap := fs.Duration("gap", 50*time.Millisecond, "pause between requests")
	fresh := fs.Bool("fresh", false, "a new SOCKS username (so a new circuit) for each request, as netbench's ttfb-fresh")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 || *port < 1 || *port > 65535 || len(*host) > 255 || len(*user) > 255 {
		return errors.New("need -n >= 1, a port in 1-65535, and a host and user of at most 255 bytes")
	}
	var conn, greet, connect, first []float64
	for i := 0; i <= *n; i++ {
		u := *user
		if *fresh {
			u = fmt.Sprintf("%s-%d-%d", *user, time.Now().UnixNano(), i)
		}
		p, err := socksOnce(*proxy, *host, uint16(*port), *path, u)
		if err != nil {
			return fmt.Errorf("request %d: %w", i, err)
		}
		if i > 0 { // the first warms up the circuit (or, with -fresh, the network)
			conn = append(conn, ms(p[0]))
			greet = append(greet, ms(p[1]))
			connect = append(connect, ms(p[2]))
			first = append(first, ms(p[3]))
		}
		time.Sleep(*gap)
	}
	total := make([]float64, len(conn))
	for i := range total {
		total[i] = conn[i] + greet[i] + connect[i] + first[i]
	}
	fmt.Printf("medians of %d requests (ms): connect %.3f  greeting+auth %.3f  CONNECT %.3f  HTTP first byte %.3f  total %.3f\n",
		*n, median(conn), median(greet), median(connect), median(first), median(total))
	return nil
}

// socksOnce makes one request and returns the duration of each phase.
func socksOnce(proxy, host string, port uint16, path, user string) ([4]time.Duration, error) {
	var p [4]time.Duration
	var at [3]time.Time
	d := &socks5.Dialer{Proxy: proxy, Auth: &socks5.Auth{User: user, Pass: "x"},
		Phase: func(ph socks5.Phase) { at[ph] = time.Now() }}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	t0 := time.Now()
	c, err := d.DialContext(ctx, "tcp", net.JoinHostPort(host, strconv.Itoa(int(port))))
	if err != nil {
		return p, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	t3 := time.Now()
	if _, err := fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", path, net.JoinHostPort(host, strconv.Itoa(int(port)))); err != nil {
		return p, err
	}
	br := bufio.NewReader(c)
	if _, err := br.ReadByte(); err != nil {
		return p, fmt.Errorf("first response byte: %w", err)
	}
	t4 := time.Now()
	io.Copy(io.Discard, br)
	// Time after the CONNECT reply until the request goes out is the
	// probe's own, and is left out.
	p = [4]time.Duration{at[socks5.PhaseConnected].Sub(t0), at[socks5.PhaseAuthenticated].Sub(at[socks5.PhaseConnected]),
		at[socks5.PhaseReplied].Sub(at[socks5.PhaseAuthenticated]), t4.Sub(t3)}
	return p, nil
}

func wakeMain(args []string) error {
	fs := flag.NewFlagSet("latencyprobe wake", flag.ContinueOnError)
	gap := fs.Duration("gap", 2*time.Millisecond, "idle time before each timed round trip")
	n := fs.Int("n", 500, "round trips of each kind")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *n < 1 {
		return errors.New("need -n >= 1")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return err
	}
	addr := ln.Addr().String()
	ln.Close()
	self, err := os.Executable()
	if err != nil {
		return err
	}
	srv := exec.Command(self, "echo-server", addr)
	srv.Stderr = os.Stderr
	if err := srv.Start(); err != nil {
		return err
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()
	var c net.Conn
	for i := 0; ; i++ {
		if c, err = net.Dial("tcp", addr); err == nil {
			break
		}
		if i == 100 {
			return fmt.Errorf("echo server did not start: %w", err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()
	b := []byte{1}
	rtt := func() (float64, error) {
		t := time.Now()
		if _, err := c.Write(b); err != nil {
			return 0, err
		}
		if _, err := io.ReadFull(c, b); err != nil {
			return 0, err
		}
		return float64(time.Since(t)) / 1e3, nil
	}
	var idle, busy []float64
	for range *n {
		time.Sleep(*gap)
		d, err := rtt()
		if err != nil {
			return err
		}
		idle = append(idle, d)
	}
	for range *n {
		d, err := rtt()
		if err != nil {
			return err
		}
		busy = append(busy, d)
	}
	fmt.Printf("one-byte echo between two processes (µs, medians of %d): after %v idle %.0f, back to back %.0f; one idle wake-up ≈ %.0f\n",
		*n, *gap, median(idle), median(busy), (median(idle)-median(busy))/2)
	return nil
}

func echoServer(args []string) error {
	if len(args) != 1 {
		return errors.New("echo-server needs an address")
	}
	ln, err := net.Listen("tcp", args[0])
	if err != nil {
		return err
	}
	for {
		c, err := ln.Accept()
		if err != nil {
			return err
		}
		go func() {
			defer c.Close()
			io.Copy(c, c)
		}()
	}
}
