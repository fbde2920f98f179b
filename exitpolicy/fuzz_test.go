package exitpolicy

import (
	"net/netip"
	"testing"
)

// FuzzParse: whatever Parse accepts prints canonically, reparses to the same
// policy, and summarizes to a summary that itself round-trips.
func FuzzParse(f *testing.F) {
	f.Add("accept *:80, accept *:443, reject *:*")
	f.Add("reject 10.0.0.0/8:*\nreject [fc00::]/7:*\naccept *:*")
	f.Add(AcceptAll.WithRejectPrivate(netip.MustParseAddr("203.0.113.5")).String())
	f.Fuzz(func(t *testing.T, s string) {
		p, err := Parse(s)
		if err != nil {
			return
		}
		text := p.String()
		p2, err := Parse(text)
		if err != nil {
			t.Fatalf("Parse(%q) ok but its String %q does not parse: %v", s, text, err)
		}
		if !p2.Equal(p) || p2.String() != text {
			t.Fatalf("round trip changed the policy: %q -> %q", text, p2.String())
		}
		for _, r := range p.Rules {
			if r2, err := ParseRule(r.String()); err != nil || r2 != r {
				t.Fatalf("rule %+v: ParseRule(String()) = %+v, %v", r, r2, err)
			}
		}
		sum := p.Summary()
		st := sum.String()
		if len(st) > MaxSummaryLen {
			t.Fatalf("summary is %d bytes", len(st))
		}
		back, err := ParseSummary(st)
		if err != nil || !back.Equal(sum) {
			t.Fatalf("summary %q does not round-trip: %v", st, err)
		}
		// The summary never accepts a port that the policy rejects for
		// every address.
		for _, port := range []uint16{1, 22, 25, 80, 443, 6667, 65535} {
			if sum.AllowsPort(port) && !p.Allows(netip.MustParseAddr("8.8.8.8"), port) &&
				!p.Allows(netip.MustParseAddr("1.1.1.1"), port) && !p.Allows(netip.MustParseAddr("93.184.216.34"), port) {
				// Possible only when narrow rejects cover exactly these
				// hosts; check that some rule names a specific prefix.
				narrow := false
				for _, r := range p.Rules {
					if r.Addr.IsValid() && r.Action == Reject && r.Ports.Contains(port) {
						narrow = true
					}
				}
				if !narrow {
					t.Fatalf("summary %q accepts port %d that %q rejects everywhere", st, port, text)
				}
			}
		}
	})
}

// FuzzParseRule: an accepted rule is exactly its canonical text.
func FuzzParseRule(f *testing.F) {
	for _, g := range ruleGolden {
		f.Add(g.text)
	}
	f.Add("reject 10.1.2.3/8:*")
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParseRule(s)
		if err != nil {
			return
		}
		if r.String() != s {
			t.Fatalf("ParseRule(%q) ok but String() = %q", s, r.String())
		}
		if err := r.Validate(); err != nil {
			t.Fatalf("ParseRule(%q) returned an invalid rule: %v", s, err)
		}
	})
}

// FuzzParseSummary: an accepted summary is exactly its canonical text.
func FuzzParseSummary(f *testing.F) {
	f.Add("accept 80,443")
	f.Add("reject 25,119,135-139,445,563,1214,4661-4666,6346-6429,6699,6881-6999")
	f.Add("reject 1-65535")
	f.Fuzz(func(t *testing.T, s string) {
		sum, err := ParseSummary(s)
		if err != nil {
			return
		}
		if sum.String() != s {
			t.Fatalf("ParseSummary(%q) ok but String() = %q", s, sum.String())
		}
		if !NewSummary(sum.Accepted()).Equal(sum) {
			t.Fatalf("NewSummary(Accepted()) differs for %q", s)
		}
	})
}
