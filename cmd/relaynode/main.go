// Command relaynode runs a chive relay: guard, middle and/or exit.
//
//	relaynode -config /etc/chive/relaynode.yaml   run the relay
//	relaynode keygen -data-dir /var/lib/chive-relay   create the identity key, print the relay ID
//	relaynode version
//
// SIGTERM or SIGINT shuts the relay down gracefully: no new links, every
// circuit destroyed with reason HIBERNATING, then exit 0.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/chive-net/chive/internal/obs"
	"github.com/chive-net/chive/relay"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 {
		switch args[0] {
		case "keygen":
			return keygen(args[1:], stdout, stderr)
		case "version":
			fmt.Fprintln(stdout, relay.Platform())
			return 0
		}
	}
	fs := flag.NewFlagSet("relaynode", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", "", "relay config file (YAML; see configs/relaynode.yaml)")
	fs.Usage = func() {
		fmt.Fprintln(stderr, "usage: relaynode -config FILE | relaynode keygen -data-dir DIR | relaynode version")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path == "" || fs.NArg() > 0 {
		fs.Usage()
		return 2
	}
	cfg, err := relay.Load(*path)
	if err != nil {
		fmt.Fprintln(stderr, "relaynode:", err)
		return 1
	}
	log, err := obs.NewLogger(cfg.Log)
	if err != nil {
		fmt.Fprintln(stderr, "relaynode:", err)
		return 1
	}
	defer log.Sync()
	r, err := relay.New(cfg, log.Named("relay"))
	if err != nil {
		log.Error("cannot start the relay", obs.Err(err, true))
		return 1
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if err := r.Run(ctx); err != nil {
		log.Error("relay failed", obs.Err(err, true))
		return 1
	}
	return 0
}

func keygen(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("relaynode keygen", flag.ContinueOnError)
	fs.SetOutput(stderr)
	dataDir := fs.String("data-dir", "", "the relay's data directory (data_dir in its config)")
	path := fs.String("config", "", "read data_dir from this config file instead")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *path != "" {
		cfg, err := relay.Load(*path)
		if err != nil {
			fmt.Fprintln(stderr, "relaynode keygen:", err)
			return 1
		}
		*dataDir = cfg.DataDir
	}
	if *dataDir == "" || fs.NArg() > 0 {
		fmt.Fprintln(stderr, "usage: relaynode keygen -data-dir DIR (or -config FILE)")
		return 2
	}
	res, err := relay.Keygen(*dataDir)
	if err != nil {
		fmt.Fprintln(stderr, "relaynode keygen:", err)
		return 1
	}
	if res.Created {
		fmt.Fprintf(stderr, "created identity key %s\n", res.Path)
	} else {
		fmt.Fprintf(stderr, "identity key %s already exists; kept it\n", res.Path)
	}
	fmt.Fprintln(stdout, res.ID)
	return 0
}
