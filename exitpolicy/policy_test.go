package exitpolicy

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func pfx(s string) netip.Prefix { return netip.MustParsePrefix(s) }

// Golden: canonical text <-> Rule.
var ruleGolden = []struct {
	text string
	rule Rule
}{
	{"accept *:*", Rule{Accept, netip.Prefix{}, AllPorts}},
	{"reject *:*", Rule{Reject, netip.Prefix{}, AllPorts}},
	{"accept *:80", Rule{Accept, netip.Prefix{}, PortRange{80, 80}}},
	{"accept *:1-1024", Rule{Accept, netip.Prefix{}, PortRange{1, 1024}}},
	{"reject *:65535", Rule{Reject, netip.Prefix{}, PortRange{65535, 65535}}},
	{"reject 10.0.0.0/8:*", Rule{Reject, pfx("10.0.0.0/8"), AllPorts}},
	{"reject 192.0.2.7:25", Rule{Reject, pfx("192.0.2.7/32"), PortRange{25, 25}}},
	{"accept 0.0.0.0/0:443", Rule{Accept, pfx("0.0.0.0/0"), PortRange{443, 443}}},
	{"reject [::1]:*", Rule{Reject, pfx("::1/128"), AllPorts}},
	{"reject [fc00::]/7:*", Rule{Reject, pfx("fc00::/7"), AllPorts}},
	{"accept [2001:db8::]/32:6660-6669", Rule{Accept, pfx("2001:db8::/32"), PortRange{6660, 6669}}},
	{"accept [::]/0:*", Rule{Accept, pfx("::/0"), AllPorts}},
}

func TestRuleGolden(t *testing.T) {
	for _, tc := range ruleGolden {
		got, err := ParseRule(tc.text)
		if err != nil {
			t.Errorf("ParseRule(%q): %v", tc.text, err)
			continue
		}
		if got != tc.rule {
			t.Errorf("ParseRule(%q) = %+v, want %+v", tc.text, got, tc.rule)
		}
		if s := tc.rule.String(); s != tc.text {
			t.Errorf("String(%+v) = %q, want %q", tc.rule, s, tc.text)
		}
	}
}

func TestRuleErrors(t *testing.T) {
	for _, tc := range []struct {
		text string
		want error
		msg  string // substring of the message
	}{
		{"", ErrSyntax, "want"},
		{"accept", ErrSyntax, "want"},
		{"allow *:80", ErrSyntax, "accept or reject"},
		{"accept *", ErrSyntax, "missing :PORT"},
		{"accept *:0", ErrSyntax, "1-65535"},
		{"accept *:65536", ErrSyntax, "bad port"},
		{"accept *:-1", ErrSyntax, "bad port"},
		{"accept *:10-5", ErrSyntax, "backwards"},
		{"accept *:2-", ErrSyntax, "bad port"},
		{"accept *:x", ErrSyntax, "bad port"},
		{"accept 1.2.3:80", ErrSyntax, "bad address"},
		{"accept 127.0.0.1/33:*", ErrSyntax, "prefix length"},
		{"reject 8.8.8.8/-1:*", ErrSyntax, "prefix length"},
		{"accept [::1]/129:*", ErrSyntax, "prefix length"},
		{"accept */15:*", ErrSyntax, "bad address"},
		{"accept ::1:80", ErrSyntax, "bad address"},
		{"accept 2001:db8::1:80", ErrSyntax, "bad address"},
		{"accept [1.2.3.4]:80", ErrSyntax, "not an IPv6"},
		{"accept [::1:80", ErrSyntax, "missing ]"},
		{"accept [fe80::1%eth0]:80", ErrSyntax, "zone"},
		{"accept [::ffff:10.0.0.1]:80", ErrSyntax, "IPv4-mapped"},
		{"reject 10.1.2.3/8:*", ErrSyntax, "did you mean 10.0.0.0/8"},
		// Spellings that mean a valid rule but are not the canonical text.
		{"accept *:1-65535", ErrNonCanonical, `write "accept *:*"`},
		{"accept *:80-80", ErrNonCanonical, `write "accept *:80"`},
		{"accept *:080", ErrNonCanonical, `write "accept *:80"`},
		{"reject 1.2.3.4/32:*", ErrNonCanonical, `write "reject 1.2.3.4:*"`},
		{"reject 10.0.0.0/08:*", ErrNonCanonical, `write "reject 10.0.0.0/8:*"`},
		{"reject [::1]/128:*", ErrNonCanonical, `write "reject [::1]:*"`},
		{"reject [2001:DB8::]/32:*", ErrNonCanonical, `write "reject [2001:db8::]/32:*"`},
		{"reject [2001:db8:0::1]:*", ErrNonCanonical, `write "reject [2001:db8::1]:*"`},
		{"accept  *:80", ErrSyntax, "bad address"},
		{"accept *:80 ", ErrSyntax, "bad port"},
		{"ACCEPT *:80", ErrSyntax, "accept or reject"},
	} {
		_, err := ParseRule(tc.text)
		if !errors.Is(err, tc.want) {
			t.Errorf("ParseRule(%q) error = %v, want %v", tc.text, err, tc.want)
			continue
		}
		if !strings.Contains(err.Error(), tc.msg) {
			t.Errorf("ParseRule(%q) error %q does not mention %q", tc.text, err, tc.msg)
		}
	}
}

func TestPolicyParseString(t *testing.T) {
	for _, tc := range []struct {
		in, canonical string
		rules         int
		def           Action
	}{
		{"", "reject *:*", 0, Reject},
		{"accept *:*", "accept *:*", 0, Accept},
		{"reject *:*", "reject *:*", 0, Reject},
		{"accept *:80, accept *:443", "accept *:80, accept *:443, reject *:*", 2, Reject},
		{"accept *:80,accept *:443,reject *:*", "accept *:80, accept *:443, reject *:*", 2, Reject},
		{"reject *:25\n  reject 10.0.0.0/8:*\taccept *:*", "", 0, 0}, // tab is not a separator
		{"reject *:25\n  reject 10.0.0.0/8:* ,\n accept *:*\n", "reject *:25, reject 10.0.0.0/8:*, accept *:*", 2, Accept},
		{"reject *:*, accept *:*", "reject *:*, accept *:*", 1, Accept}, // a dead rule is kept as written
	} {
		p, err := Parse(tc.in)
		if tc.canonical == "" {
			if err == nil {
				t.Errorf("Parse(%q) succeeded, want error", tc.in)
			}
			continue
		}
		if err != nil {
			t.Errorf("Parse(%q): %v", tc.in, err)
			continue
		}
		if got := p.String(); got != tc.canonical {
			t.Errorf("Parse(%q).String() = %q, want %q", tc.in, got, tc.canonical)
		}
		if len(p.Rules) != tc.rules || p.Default != tc.def {
			t.Errorf("Parse(%q) = %d rules, default %v; want %d, %v", tc.in, len(p.Rules), p.Default, tc.rules, tc.def)
		}
		p2, err := Parse(p.String())
		if err != nil || !p2.Equal(p) {
			t.Errorf("Parse(String()) of %q = %v, %v", tc.in, p2, err)
		}
	}
	p, err := ParseWithDefault("accept *:80", Accept)
	if err != nil || p.Default != Accept || p.String() != "accept *:80, accept *:*" {
		t.Errorf("ParseWithDefault(accept) = %v, %v", p, err)
	}
	if _, err := Parse("accept *:80, reject *:0"); !errors.Is(err, ErrSyntax) {
		t.Errorf("Parse with a bad rule: err = %v", err)
	}
	long := strings.Repeat("accept *:80,", MaxRules+1)
	if _, err := Parse(long); !errors.Is(err, ErrTooManyRules) {
		t.Errorf("Parse(%d rules): err = %v, want ErrTooManyRules", MaxRules+1, err)
	}
	if _, err := Parse(strings.Repeat("accept *:80,", MaxRules) + "reject *:*"); err != nil {
		t.Errorf("Parse(%d rules + default): %v", MaxRules, err)
	}
}

func TestAllows(t *testing.T) {
	p, err := Parse("reject 10.0.0.0/8:*, reject [2001:db8::]/32:25, accept *:25, accept 198.51.100.0/24:1000-2000, reject *:1-1024, accept [::]/0:*, reject *:*")
	if err != nil {
		t.Fatal(err)
	}
	a := netip.MustParseAddr
	for _, tc := range []struct {
		addr string
		port uint16
		want bool
	}{
		{"10.1.2.3", 25, false},             // first rule
		{"::ffff:10.1.2.3", 25, false},      // mapped addresses are judged as IPv4
		{"192.0.2.1", 25, true},             // accept *:25
		{"2001:db8::5", 25, false},          // IPv6 reject before accept *:25
		{"2001:db9::5", 25, true},           // outside the /32
		{"198.51.100.9", 1500, true},        // accept prefix:range
		{"198.51.100.9", 2001, false},       // falls to reject *:*
		{"198.51.101.9", 1500, false},       // other prefix
		{"192.0.2.1", 80, false},            // reject *:1-1024
		{"2001:db9::5", 8080, true},         // accept [::]/0:*
		{"2001:db9::5", 80, false},          // reject *:1-1024 comes first
		{"192.0.2.1", 8080, false},          // [::]/0 does not match IPv4; default reject
		{"192.0.2.1", 0, false},             // port 0 never
		{"fe80::1%eth0", 8080, true},        // zone stripped before matching
		{"2001:db8::5%eth0", 25, false},     // zone stripped before matching
		{"255.255.255.255", 65535, false},   // default
		{"::ffff:198.51.100.1", 1000, true}, // mapped accept
	} {
		if got := p.Allows(a(tc.addr), tc.port); got != tc.want {
			t.Errorf("Allows(%s, %d) = %v, want %v", tc.addr, tc.port, got, tc.want)
		}
	}
	if p.Allows(netip.Addr{}, 80) || AcceptAll.Allows(netip.Addr{}, 80) {
		t.Error("Allows(invalid address) = true")
	}
	if !AcceptAll.Allows(a("10.0.0.1"), 1) || RejectAll.Allows(a("8.8.8.8"), 53) {
		t.Error("AcceptAll/RejectAll wrong")
	}
	var zero Policy
	if zero.Allows(a("8.8.8.8"), 53) {
		t.Error("zero Policy allows a destination")
	}
}

func TestRejectPrivate(t *testing.T) {
	own4 := netip.MustParseAddr("203.0.113.5")
	own6 := netip.MustParseAddr("2001:db8:1::5")
	p := AcceptAll.WithRejectPrivate(own4, own6, own4, netip.Addr{}, netip.MustParseAddr("10.0.0.1"), netip.MustParseAddr("::ffff:203.0.113.5"))
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	// own4 once, own6 once; the invalid, the private and the mapped duplicate dropped.
	if want := len(privateAll) + 2; len(p.Rules) != want {
		t.Fatalf("len(rules) = %d, want %d: %v", len(p.Rules), want, p)
	}
	for _, s := range []string{
		"0.0.0.0", "0.1.2.3", "10.9.9.9", "100.64.0.1", "100.127.255.255", "127.0.0.1", "127.255.255.254",
		"169.254.169.254", "172.16.0.1", "172.31.255.255", "192.168.1.1", "224.0.0.1", "239.255.255.250",
		"240.0.0.1", "255.255.255.255", "::", "::1", "fe80::1", "febf::1", "fc00::1", "fd12:3456::1", "ff02::1",
		"fec0::1", "::ffff:127.0.0.1", "::ffff:192.168.0.1", "64:ff9b::7f00:1", "64:ff9b::a00:1", "64:ff9b::c0a8:101",
		"203.0.113.5", "2001:db8:1::5", "::ffff:203.0.113.5",
	} {
		a := netip.MustParseAddr(s)
		if p.Allows(a, 80) {
			t.Errorf("policy with RejectPrivate allows %s", s)
		}
		if !IsPrivate(a) && s != "203.0.113.5" && s != "2001:db8:1::5" && s != "::ffff:203.0.113.5" {
			t.Errorf("IsPrivate(%s) = false", s)
		}
	}
	for _, s := range []string{
		"8.8.8.8", "1.1.1.1", "100.63.255.255", "100.128.0.0", "172.32.0.1", "192.0.2.1", "203.0.113.6",
		"2001:4860:4860::8888", "2001:db8:1::6", "64:ff9b::808:808", "223.255.255.255",
	} {
		a := netip.MustParseAddr(s)
		if !p.Allows(a, 80) {
			t.Errorf("policy with RejectPrivate rejects public %s", s)
		}
		if IsPrivate(a) {
			t.Errorf("IsPrivate(%s) = true", s)
		}
	}
	if !IsPrivate(netip.Addr{}) {
		t.Error("IsPrivate(invalid) = false")
	}
	// The private rules do not change the summary: clients see "accept 1-65535".
	if got := p.Summary().String(); got != "accept 1-65535" {
		t.Errorf("summary of AcceptAll+RejectPrivate = %q", got)
	}
	// And the published text parses back to the same policy.
	q, err := Parse(p.String())
	if err != nil || !q.Equal(p) {
		t.Fatalf("Parse(String()) = %v, %v", q, err)
	}
}

func BenchmarkAllows(b *testing.B) {
	p := AcceptAll.WithRejectPrivate(netip.MustParseAddr("203.0.113.5"))
	dst := netip.MustParseAddr("2001:4860:4860::8888")
	b.ReportAllocs()
	for b.Loop() {
		if !p.Allows(dst, 443) {
			b.Fatal("rejected")
		}
	}
}

func BenchmarkParse(b *testing.B) {
	text := AcceptAll.WithRejectPrivate(netip.MustParseAddr("203.0.113.5")).String()
	b.SetBytes(int64(len(text)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Parse(text); err != nil {
			b.Fatal(err)
		}
	}
}
