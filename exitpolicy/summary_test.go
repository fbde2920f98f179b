package exitpolicy

import (
	"bufio"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestSummaryTorVectors checks Policy.Summary against the expectations in
// Tor's own unit tests (testdata/tor_policy_summary.txt names the source).
func TestSummaryTorVectors(t *testing.T) {
	f, err := os.Open("testdata/tor_policy_summary.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<20)
	var policy string
	n := 0
	for sc.Scan() {
		line := sc.Text()
		switch {
		case strings.HasPrefix(line, "policy: "):
			policy = strings.TrimPrefix(line, "policy: ")
		case strings.HasPrefix(line, "summary: "):
			want := strings.TrimPrefix(line, "summary: ")
			p, err := Parse(policy)
			if err != nil {
				t.Errorf("vector %d: Parse: %v", n, err)
				continue
			}
			s := p.Summary()
			if got := s.String(); got != want {
				t.Errorf("vector %d: summary of %.80q...\n got %q\nwant %q", n, policy, got, want)
			}
			back, err := ParseSummary(want)
			if err != nil || !back.Equal(s) {
				t.Errorf("vector %d: ParseSummary(%q) = %v, %v", n, want, back, err)
			}
			n++
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	if n < 20 {
		t.Fatalf("only %d vectors read", n)
	}
}

func TestSummaryGolden(t *testing.T) {
	for _, tc := range []struct {
		text     string
		accepted []PortRange
	}{
		{"reject 1-65535", nil},
		{"accept 1-65535", []PortRange{{1, 65535}}},
		{"accept 80,443", []PortRange{{80, 80}, {443, 443}}},
		{"accept 80,443,1000-2000", []PortRange{{80, 80}, {443, 443}, {1000, 2000}}},
		{"reject 25", []PortRange{{1, 24}, {26, 65535}}},
		{"accept 2-65534", []PortRange{{2, 65534}}}, // "reject 1,65535" is as long: accept wins ties
		{"accept 1", []PortRange{{1, 1}}},
		{"accept 65535", []PortRange{{65535, 65535}}},
		{"reject 1-1024", []PortRange{{1025, 65535}}},
		{"accept 1-1024", []PortRange{{1, 1024}}},
	} {
		s, err := ParseSummary(tc.text)
		if err != nil {
			t.Errorf("ParseSummary(%q): %v", tc.text, err)
			continue
		}
		want := NewSummary(tc.accepted)
		if !s.Equal(want) {
			t.Errorf("ParseSummary(%q) = %v, want %v", tc.text, s.Accepted(), tc.accepted)
		}
		if got := want.String(); got != tc.text {
			t.Errorf("NewSummary(%v).String() = %q, want %q", tc.accepted, got, tc.text)
		}
	}
}

func TestSummaryErrors(t *testing.T) {
	for _, tc := range []struct {
		text string
		want error
	}{
		// Tor's "broken short policies" (test_policies_general).
		{"accept 200-199", ErrSyntax},
		{"", ErrSyntax},
		{"rejekt 1,2,3", ErrSyntax},
		{"reject ", ErrSyntax},
		{"reject", ErrSyntax},
		{"rej", ErrSyntax},
		{"accept 2,3,100000", ErrSyntax},
		{"accept 2,3x,4", ErrSyntax},
		{"accept 2-", ErrSyntax},
		{"accept 2-x", ErrSyntax},
		{"accept 1-,3", ErrSyntax},
		// Tor tolerates these; chive's canonical form does not.
		{"accept fred,2,3-5", ErrSyntax},
		{"accept 1,,3", ErrSyntax},
		{"accept 0", ErrSyntax},
		{"accept *", ErrSyntax},
		{"accept 3,2", ErrSyntax},
		{"accept 2,3", ErrSyntax},   // adjacent: write 2-3
		{"accept 2-5,4", ErrSyntax}, // overlap
		{"accept 2-5,6", ErrSyntax}, // adjacent
		{"accept  80", ErrSyntax},   // double space
		{"accept 80 ", ErrSyntax},   // trailing space
		{"accept 80-80", ErrNonCanonical},
		{"accept 080", ErrNonCanonical},
		{"accept 1-24,26-65535", ErrNonCanonical},
		{"reject 1-79,81-442,444-65535", ErrNonCanonical}, // "accept 80,443" is shorter
		{"reject 1,65535", ErrNonCanonical},
		{"accept 1025-65535", ErrNonCanonical},
		{"accept " + strings.Repeat("1,", 600) + "1", ErrSyntax}, // too long
	} {
		_, err := ParseSummary(tc.text)
		if !errors.Is(err, tc.want) || (tc.want != nil && err == nil) {
			t.Errorf("ParseSummary(%q) error = %v, want %v", tc.text, err, tc.want)
		}
	}
}

func TestSummaryAllowsPort(t *testing.T) {
	s, err := ParseSummary("accept 1,80,443,1000-2000,65535")
	if err != nil {
		t.Fatal(err)
	}
	for port, want := range map[uint16]bool{0: false, 1: true, 2: false, 79: false, 80: true, 81: false, 443: true,
		999: false, 1000: true, 1500: true, 2000: true, 2001: false, 65534: false, 65535: true} {
		if got := s.AllowsPort(port); got != want {
			t.Errorf("AllowsPort(%d) = %v, want %v", port, got, want)
		}
	}
	var zero Summary
	if zero.AllowsPort(80) || zero.AcceptsAny() || zero.String() != "reject 1-65535" {
		t.Error("zero Summary is not reject-all")
	}
	all := AcceptAll.Summary()
	if !all.AllowsPort(1) || !all.AllowsPort(65535) || all.AllowsPort(0) {
		t.Error("AcceptAll summary wrong")
	}
}

func TestNewSummaryNormalizes(t *testing.T) {
	s := NewSummary([]PortRange{{443, 443}, {0, 2}, {80, 90}, {85, 100}, {101, 101}, {9, 3}})
	if got, want := s.String(), "accept 1-2,80-101,443"; got != want {
		t.Errorf("NewSummary = %q, want %q", got, want)
	}
	// A set too long to write is cut to the accepted ranges that fit.
	var odd []PortRange
	for p := uint16(1); p < 4000; p += 2 {
		odd = append(odd, PortRange{p, p})
	}
	long := NewSummary(odd)
	txt := long.String()
	if len(txt) > MaxSummaryLen || !strings.HasPrefix(txt, "accept 1,3,5,") {
		t.Fatalf("truncated summary is %d bytes: %.40q", len(txt), txt)
	}
	if _, err := ParseSummary(txt); err != nil {
		t.Fatalf("truncated summary does not parse: %v", err)
	}
}

// Accept rules for a narrow prefix never put a port into the summary, and a
// reject of up to a /7's worth of addresses does not take one out (Tor's
// cutoff).
func TestSummaryConservative(t *testing.T) {
	p, err := Parse("reject 8.0.0.0/7:443, accept 9.9.9.9:22, accept *:22, accept *:80, accept *:443, reject *:*")
	if err != nil {
		t.Fatal(err)
	}
	s := p.Summary()
	if got := s.String(); got != "accept 22,80,443" {
		t.Fatalf("summary = %q", got)
	}
	p2, _ := Parse("accept 9.9.9.9:22, reject *:*")
	if s2 := p2.Summary(); s2.AcceptsAny() {
		t.Errorf("summary of a single-address accept = %q, want nothing accepted", s2)
	}
}

func BenchmarkSummary(b *testing.B) {
	p, err := Parse(AcceptAll.WithRejectPrivate().String())
	if err != nil {
		b.Fatal(err)
	}
	p.Default = Reject
	for _, port := range []string{"accept *:20-23", "accept *:43", "accept *:53", "accept *:80", "accept *:443", "accept *:6660-6669"} {
		r, _ := ParseRule(port)
		p.Rules = append(p.Rules, r)
	}
	b.ReportAllocs()
	for b.Loop() {
		_ = p.Summary()
	}
}

func BenchmarkParseSummary(b *testing.B) {
	const text = "accept 20-23,43,53,79-81,88,110,143,194,220,389,443,464,531,543-544,554,563,636,706,749,873"
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseSummary(text); err != nil {
			b.Fatal(err)
		}
	}
}
