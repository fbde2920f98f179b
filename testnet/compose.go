package testnet

import (
	"bytes"
	"context"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"text/template"
	"time"
)

// ComposeOptions shape a docker compose network.
type ComposeOptions struct {
	// Dir receives the generated configs and keys (one directory per
	// node, mounted as its /data) and docker-compose.yml.
	Dir string
	// Authorities (default 3), Relays (default 3) and Exits (default 2).
	Authorities, Relays, Exits int
	// Subnet is the compose network's IPv4 /24 (default 10.213.0.0/24);
	// every node gets a fixed address in it, because descriptors and the
	// consensus carry addresses, and the client may not resolve names.
	Subnet netip.Prefix
	// VotingPeriod (default 5s) and InitialVotingPeriod, the authorities'
	// period until they hold a usable consensus (default 1s; it must
	// divide VotingPeriod).
	VotingPeriod, InitialVotingPeriod time.Duration
	// SOCKSPort, HTTPPort, DNSPort are the client's ports as published on
	// the host's 127.0.0.1 (defaults 19050, 19080, 19053).
	SOCKSPort, HTTPPort, DNSPort int
	// Bins are host-built binaries used to make keys (keygen).
	Bins map[string]string
	// BinDir is the build context's binary directory, relative to Dir's
	// compose file (default "../docker/bin").
	ContextDir string
}

func (o *ComposeOptions) defaults() {
	if o.Authorities == 0 {
		o.Authorities = 3
	}
	if o.Relays == 0 {
		o.Relays = 3
	}
	if o.Exits == 0 {
		o.Exits = 2
	}
	if !o.Subnet.IsValid() {
		o.Subnet = netip.MustParsePrefix("10.213.0.0/24")
	}
	if o.VotingPeriod == 0 {
		o.VotingPeriod = 5 * time.Second
	}
	if o.InitialVotingPeriod == 0 {
		o.InitialVotingPeriod = time.Second
	}
	if o.SOCKSPort == 0 {
		o.SOCKSPort = 19050
	}
	if o.HTTPPort == 0 {
		o.HTTPPort = 19080
	}
	if o.DNSPort == 0 {
		o.DNSPort = 19053
	}
	if o.ContextDir == "" {
		o.ContextDir = "./docker"
	}
}

type composeNode struct {
	Name    string
	Role    Role
	IP      netip.Addr
	Binary  string
	Config  string // relative to the compose file
	DataDir string // relative to the compose file
}

// GenerateCompose writes configs, keys and a docker-compose.yml for a
// network of the given shape into o.Dir. The compose file builds one image
// FROM scratch holding the static binaries (see testnet/docker/Dockerfile).
func GenerateCompose(ctx context.Context, o ComposeOptions) error {
	o.defaults()
	if o.Subnet.Bits() != 24 || !o.Subnet.Addr().Is4() {
		return fmt.Errorf("compose subnet %v: use an IPv4 /24", o.Subnet)
	}
	if err := os.MkdirAll(o.Dir, 0o755); err != nil {
		return err
	}
	host := func(i int) netip.Addr {
		b := o.Subnet.Addr().As4()
		b[3] = byte(i)
		return netip.AddrFrom4(b)
	}
	n := &Network{bins: o.Bins}
	var nodes []composeNode
	ip := 10
	for i := 1; i <= o.Authorities; i++ {
		name := fmt.Sprintf("auth%d", i)
		data := filepath.Join(o.Dir, name)
		if err := os.MkdirAll(data, 0o700); err != nil {
			return err
		}
		id, err := n.keygen(ctx, "directory", data)
		if err != nil {
			return err
		}
		a := host(ip)
		n.Authorities = append(n.Authorities, Authority{Nickname: name, ID: id, Addr: netip.AddrPortFrom(a, 7000)})
		nodes = append(nodes, composeNode{Name: name, Role: RoleAuthority, IP: a, Binary: "directory"})
		ip++
	}
	ip = 20
	for i := 1; i <= o.Relays+o.Exits; i++ {
		name, role := fmt.Sprintf("relay%d", i), RoleRelay
		if i > o.Relays {
			name, role = fmt.Sprintf("exit%d", i-o.Relays), RoleExit
		}
		nodes = append(nodes, composeNode{Name: name, Role: role, IP: host(ip), Binary: "relaynode"})
		ip++
	}
	nodes = append(nodes, composeNode{Name: "client", Role: RoleClient, IP: host(100), Binary: "onionproxy"})

	for i := range nodes {
		nd := &nodes[i]
		nd.Config = "./" + filepath.Join(filepath.Base(o.Dir), nd.Name+".yaml")
		nd.DataDir = "./" + filepath.Join(filepath.Base(o.Dir), nd.Name)
		if err := os.MkdirAll(filepath.Join(o.Dir, nd.Name), 0o700); err != nil {
			return err
		}
		path := filepath.Join(o.Dir, nd.Name+".yaml")
		var err error
		switch nd.Role {
		case RoleAuthority:
			err = writeConfig(path, composeAuthorityTmpl, map[string]any{
				"Name": nd.Name, "Authorities": n.Authorities, "Period": o.VotingPeriod, "Initial": o.InitialVotingPeriod})
		case RoleRelay, RoleExit:
			err = writeConfig(path, composeRelayTmpl, map[string]any{
				"Name": nd.Name, "IP": nd.IP, "Exit": nd.Role == RoleExit, "Authorities": n.Authorities,
				"Publish": o.VotingPeriod / 2})
		case RoleClient:
			err = writeConfig(path, composeClientTmpl, map[string]any{"Authorities": n.Authorities})
		}
		if err != nil {
			return err
		}
		// The config is read inside the container, by root: 0644 is fine
		// and lets a host user read it too. Keys stay 0600.
		if err := os.Chmod(path, 0o644); err != nil {
			return err
		}
	}
	var b bytes.Buffer
	err := composeTmpl.Execute(&b, map[string]any{
		"Nodes": nodes, "Subnet": o.Subnet, "Web": host(200), "Context": o.ContextDir,
		"SOCKS": o.SOCKSPort, "HTTP": o.HTTPPort, "DNS": o.DNSPort,
	})
	if err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(filepath.Dir(o.Dir), "docker-compose.yml"), b.Bytes(), 0o644)
}

var composeAuthorityTmpl = template.Must(template.New("cauth").Parse(`# generated by testnet compose
nickname: {{.Name}}
data_dir: /data
listen: 0.0.0.0:7000
authorities:
{{- range .Authorities}}
  - nickname: {{.Nickname}}
    id: {{.ID}}
    address: {{.Addr}}
{{- end}}
voting_period: {{.Period}}
initial_voting_period: {{.Initial}}
testnet: true
metrics_listen: 0.0.0.0:9037
`))

var composeRelayTmpl = template.Must(template.New("crelay").Parse(`# generated by testnet compose
nickname: {{.Name}}
data_dir: /data
listen: 0.0.0.0:9001
address: {{.IP}}:9001
testnet: true
bandwidth:
  advertised: 100MiB
{{- if .Exit}}
exit:
  enabled: true
  policy:
    - accept *:*
  # Docker's resolver (from /etc/resolv.conf) resolves the compose
  # services' names, such as "web".
  allow_private_destinations: true
{{- end}}
authorities:
{{- range .Authorities}}
  - nickname: {{.Nickname}}
    id: {{.ID}}
    address: {{.Nickname}}:7000
{{- end}}
publish_interval: {{.Publish}}
metrics:
  listen: 0.0.0.0:9035
`))

var composeClientTmpl = template.Must(template.New("cclient").Parse(`# generated by testnet compose
data_dir: /data
authorities:
{{- range .Authorities}}
  - id: {{.ID}}
    address: {{.Addr}}
{{- end}}
socks_listeners:
  - address: 0.0.0.0:9050
http_connect_listeners:
  - address: 0.0.0.0:9080
dns_listener:
  address: 0.0.0.0:9053
control_listener: 0.0.0.0:9036
enforce_distinct_subnets: false
`))

var composeTmpl = template.Must(template.New("compose").Parse(`# Generated by "go run ./testnet/cmd/testnet compose generate"; see README.md.
# Works with docker-compose 1.29 and docker compose v2. The image is built
# FROM scratch from statically linked binaries, so nothing is pulled.
version: "3.7"

x-chive: &chive
  image: chive-testnet:latest
  restart: "no"
  stop_grace_period: 15s

services:
  web:
    image: chive-testnet:latest
    build: {{.Context}}
    entrypoint: ["/bin/testservices", "-web", ":80", "-dns", ":53"]
    networks:
      chive:
        ipv4_address: {{.Web}}
{{range .Nodes}}
  {{.Name}}:
    <<: *chive
    entrypoint: ["/bin/{{.Binary}}", "-config", "/etc/chive/config.yaml"]
    volumes:
      - {{.Config}}:/etc/chive/config.yaml:ro
      - {{.DataDir}}:/data
{{- if eq .Role "client"}}
    ports:
      - "127.0.0.1:{{$.SOCKS}}:9050"
      - "127.0.0.1:{{$.HTTP}}:9080"
      - "127.0.0.1:{{$.DNS}}:9053/udp"
      - "127.0.0.1:{{$.DNS}}:9053/tcp"
{{- end}}
    depends_on: [web]
    networks:
      chive:
        ipv4_address: {{.IP}}
{{end}}
networks:
  chive:
    driver: bridge
    ipam:
      config:
        - subnet: {{.Subnet}}
`))
