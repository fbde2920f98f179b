// Command directory runs a chive directory authority.
//
//	directory -config /etc/chive/directory.yaml   run the authority
//	directory keygen -data-dir DIR               create (or show) the identity key, print its ID
//
// See configs/directory-*.yaml for sample configurations and
// docs/DIRECTORY.md for the protocol.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.uber.org/zap"

	"github.com/chive-net/chive/directory"
	"github.com/chive-net/chive/internal/obs"
)

func main() {
	if len(os.Args) > 1 && os.Args[1] == "keygen" {
		os.Exit(keygen(os.Args[2:]))
	}
	configPath := flag.String("config", "/etc/chive/directory.yaml", "configuration file")
	flag.Parse()
	if flag.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "directory: unexpected argument %q (did you mean \"directory keygen -data-dir DIR\"?)\n", flag.Arg(0))
		os.Exit(2)
	}
	cfg, err := directory.LoadConfig(*configPath)
	if err != nil {
		fmt.Fprintln(os.Stderr, "directory:", err)
		os.Exit(2)
	}
	log, err := obs.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(os.Stderr, "directory:", err)
		os.Exit(2)
	}
	defer log.Sync()
	if err := run(cfg, log); err != nil {
		log.Error("directory authority failed", zap.Error(err))
		log.Sync()
		os.Exit(1)
	}
}

func run(cfg *directory.Config, log *zap.Logger) error {
	reg := obs.NewRegistry()
	cfg.Registry = reg
	a, err := directory.New(cfg, log.Named("directory"))
	if err != nil {
		return err
	}
	if cfg.MetricsListen != "" {
		srv, err := obs.Serve(cfg.MetricsListen, reg, nil, log.Named("metrics"))
		if err != nil {
			a.Close()
			return err
		}
		defer srv.Close()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return a.Run(ctx)
}

func keygen(args []string) int {
	fs := flag.NewFlagSet("directory keygen", flag.ContinueOnError)
	dir := fs.String("data-dir", "", "the authority's data directory (data_dir in its config)")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *dir == "" || fs.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: directory keygen -data-dir DIR")
		return 2
	}
	key, created, err := directory.LoadOrCreateKey(*dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "directory keygen:", err)
		return 1
	}
	if !created {
		fmt.Fprintln(os.Stderr, "directory keygen: a key already exists; its ID is:")
	}
	fmt.Println(key.ID())
	return 0
}
