package onionproxy

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/chive-net/chive/dnsproxy"
	"github.com/chive-net/chive/internal/config"
)

// TestSampleConfig loads configs/onionproxy.yaml: it must parse strictly,
// validate, and say exactly the defaults it claims to.
func TestSampleConfig(t *testing.T) {
	c, err := LoadConfig(filepath.Join("..", "configs", "onionproxy.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Authorities) != 3 || c.Authorities[0].Address != "192.0.2.10:7000" {
		t.Errorf("authorities %+v", c.Authorities)
	}
	var d Config
	d.DataDir = c.DataDir
	d.Authorities = c.Authorities
	if err := d.Check(); err != nil {
		t.Fatal(err)
	}
	// The sample's values are the defaults (besides data_dir and the
	// example authorities): documentation that cannot drift.
	// The DNS limits' defaults live in dnsproxy; log's in internal/obs.
	d.DNSListener.CacheEntries, d.DNSListener.Timeout, d.DNSListener.MaxInflight, d.DNSListener.MaxTCPConns = dnsproxy.DefaultCacheEntries, dnsproxy.DefaultTimeout, dnsproxy.DefaultMaxInflight, dnsproxy.DefaultMaxTCPConns
	d.Log.Level, d.Log.Format = "info", "console"
	if !reflect.DeepEqual(c, &d) {
		t.Errorf("sample config differs from the defaults:\n%+v\n%+v", *c, d)
	}
	if c.SOCKSListeners[0].Address != DefaultSOCKSAddr || c.HTTPConnectListeners[0].Address != DefaultHTTPAddr ||
		c.DNSListener.Address != DefaultDNSAddr || c.ControlListener != DefaultControlAddr {
		t.Errorf("listeners %+v", c)
	}
}

func TestConfigErrors(t *testing.T) {
	const good = "data_dir: /tmp/x\nauthorities:\n  - id: kSU4hcOJZphGXEhj1gTqK7vPT1/ghWpjMBkz3jeoewE\n    address: 192.0.2.1:7000\n"
	cases := []struct{ yaml, key string }{
		{"authorities: []\n", "data_dir"},
		{good + "socks_listeners:\n  - address: localhost:9050\n", "socks_listeners[0].address"},
		{good + "dns_listener:\n  address: nowhere\n", "dns_listener.address"},
		{"data_dir: /x\nauthorities:\n  - id: nope\n    address: 192.0.2.1:7000\n", "authorities[0].id"},
		{"data_dir: /x\nauthorities:\n  - id: kSU4hcOJZphGXEhj1gTqK7vPT1/ghWpjMBkz3jeoewE\n    address: dir.example:7000\n", "authorities[0].address"},
		{good + "guards:\n  primary: 30\n", "guards.primary"},
		{good + "circuits:\n  max_dirtiness: -1s\n", "circuits.max_dirtiness"},
		{good + "limits:\n  max_header_bytes: 10\n", "limits.max_header_bytes"},
		{good + "log:\n  level: loud\n", "log"},
	}
	for _, tc := range cases {
		var c Config
		err := config.Decode(strings.NewReader(tc.yaml), "t.yaml", &c)
		if err == nil {
			err = c.Check()
		}
		var ce *config.Error
		if !errors.As(err, &ce) || ce.Key != tc.key {
			t.Errorf("%q: error %v, want one about %s", tc.yaml, err, tc.key)
		}
	}
	// Unknown keys are errors naming the key.
	var c Config
	err := config.Decode(strings.NewReader(good+"socks_listener:\n  - address: 127.0.0.1:1\n"), "t.yaml", &c)
	if err == nil || !strings.Contains(err.Error(), `unknown key "socks_listener"`) {
		t.Errorf("typo: %v", err)
	}
	// An empty list turns a front-end off; absent means the default.
	c = Config{}
	if err := config.Decode(strings.NewReader(good+"socks_listeners: []\n"), "t.yaml", &c); err != nil {
		t.Fatal(err)
	}
	if err := c.Check(); err != nil || len(c.SOCKSListeners) != 0 || len(c.HTTPConnectListeners) != 1 {
		t.Errorf("socks_listeners: [] gave %v %+v", err, c.SOCKSListeners)
	}
}

func TestConfigDataDirMode(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state")
	n := newTestNet(t, netOpts{})
	cfg := testConfig(t)
	cfg.DataDir = dir
	rp := startProxy(t, cfg, WithConsensusSource(n.source()))
	rp.stop()
	fi, err := os.Stat(dir)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir mode %v, want 0700", fi.Mode().Perm())
	}
}
