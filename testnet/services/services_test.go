package services

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"net/http"
	"net/netip"
	"strings"
	"testing"

	"github.com/miekg/dns"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestServers(t *testing.T) {
	s, err := Start("127.0.0.1:0", "127.0.0.1:0", netip.MustParseAddr("127.0.0.1"))
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()

	resp, err := http.Get("http://" + s.Web.String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), PageText) {
		t.Fatalf("front page lacks %q", PageText)
	}
	resp, err = http.Get("http://" + s.Web.String() + "/size/1000000")
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	io.Copy(h, resp.Body)
	resp.Body.Close()
	if got := hex.EncodeToString(h.Sum(nil)); got != BodySHA256(1000000) {
		t.Fatalf("body hash %s, want %s", got, BodySHA256(1000000))
	}

	cases := []struct {
		name  string
		qtype uint16
		rcode int
		n     int
		net   string
	}{
		{"www.chive.test.", dns.TypeA, dns.RcodeSuccess, 1, "udp"},
		{"www.chive.test.", dns.TypeAAAA, dns.RcodeSuccess, 1, "udp"},
		{"chive.test.", dns.TypeMX, dns.RcodeSuccess, 1, "udp"},
		{"chive.test.", dns.TypeTXT, dns.RcodeSuccess, 1, "tcp"},
		{"_http._tcp.chive.test.", dns.TypeSRV, dns.RcodeSuccess, 1, "udp"},
		{"nope.chive.test.", dns.TypeA, dns.RcodeNameError, 0, "udp"},
		{"example.com.", dns.TypeA, dns.RcodeRefused, 0, "udp"},
		{"big.chive.test.", dns.TypeTXT, dns.RcodeSuccess, 1, "tcp"},
	}
	for _, tc := range cases {
		c := &dns.Client{Net: tc.net}
		q := new(dns.Msg)
		q.SetQuestion(tc.name, tc.qtype)
		r, _, err := c.Exchange(q, s.DNS.String())
		if err != nil {
			t.Fatalf("%s %s: %v", tc.name, dns.TypeToString[tc.qtype], err)
		}
		if r.Rcode != tc.rcode || len(r.Answer) != tc.n {
			t.Errorf("%s %s: rcode %s, %d answers; want %s, %d", tc.name, dns.TypeToString[tc.qtype],
				dns.RcodeToString[r.Rcode], len(r.Answer), dns.RcodeToString[tc.rcode], tc.n)
		}
	}
}
