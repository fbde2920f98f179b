// Command onionproxy runs the chive client: SOCKS5, HTTP CONNECT and DNS
// front-ends whose every request travels through chive circuits.
//
//	onionproxy -config /etc/chive/onionproxy.yaml
//
// SIGINT and SIGTERM stop it; SIGHUP asks for a new identity (new streams
// use new circuits), as POST /newnym on the control listener does. See
// configs/onionproxy.yaml for a sample configuration.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/onionproxy"
)

func main() {
	configPath := flag.String("config", "/etc/chive/onionproxy.yaml", "configuration file")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "onionproxy: unexpected argument %q\n", flag.Arg(0))
		os.Exit(2)
	}
	cfg, err := onionproxy.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "onionproxy:", err)
		os.Exit(2)
	}
	log, err := obs.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "onionproxy:", err)
		os.Exit(2)
	}
	defer log.Sync()
	if err := run(cfg, log); err != nil {
		log.Error("onion proxy failed", zap.Error(err))
		log.Sync()
		os.Exit(1)
	}
}

func run(cfg *onionproxy.Config, log *zap.Logger) error {
	p, err := onionproxy.New(cfg, log.Named("onionproxy"))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	go func() {
		for {
			select {
			case <-hup:
				p.NewIdentity()
			case <-ctx.Done():
				return
			}
		}
	}()
	return p.Run(ctx)
}
