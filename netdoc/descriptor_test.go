package netdoc

import (
	"bytes"
	"crypto/sha256"
	"errors"
	"net/netip"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

func TestDescriptorGolden(t *testing.T) {
	for _, tc := range []struct {
		file string
		make func(testing.TB, string) (*Descriptor, *layercrypt.IdentityKey)
	}{
		{"descriptor.golden", testDescriptor},
		{"descriptor-minimal.golden", minimalDescriptor},
	} {
		t.Run(tc.file, func(t *testing.T) {
			d, k := tc.make(t, "A")
			b, err := d.Sign(k)
			if err != nil {
				t.Fatal(err)
			}
			golden(t, tc.file, b)
			if d.Digest() != sha256.Sum256(b) {
				t.Error("Sign did not record the digest")
			}
			got, err := ParseDescriptor(b, testTime)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, d) {
				t.Errorf("Parse(Sign(d)) != d:\n got %+v\nwant %+v", got, d)
			}
			// Encode(Parse(b)) == b: re-signing the parsed document gives
			// the same bytes (Ed25519 is deterministic).
			again, err := got.Sign(k)
			if err != nil || !bytes.Equal(again, b) {
				t.Errorf("Sign(Parse(b)) != b (%v)", err)
			}
		})
	}
}

func TestDescriptorParseErrors(t *testing.T) {
	d, k := testDescriptor(t, "A")
	good, err := d.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	g := string(good)
	lines := strings.SplitAfter(g, "\n")
	lines = lines[:len(lines)-1] // drop the empty tail
	// lineOf returns the 1-based number of the line starting with kw.
	lineOf := func(kw string) int {
		for i, l := range lines {
			if strings.HasPrefix(l, kw+" ") {
				return i + 1
			}
		}
		t.Fatalf("no %q line", kw)
		return 0
	}
	replace := func(kw, with string) string {
		i := lineOf(kw) - 1
		out := append([]string(nil), lines...)
		out[i] = with
		return strings.Join(out, "")
	}
	insertAfter := func(kw, extra string) string {
		i := lineOf(kw)
		out := append([]string(nil), lines[:i]...)
		out = append(out, extra)
		out = append(out, lines[i:]...)
		return strings.Join(out, "")
	}
	remove := func(kw string) string { return replace(kw, "") }
	id := d.ID.String()
	for _, tc := range []struct {
		name string
		doc  string
		want error
		line int
	}{
		{"wrong type", strings.Replace(g, "chive-descriptor 1", "chive-vote 1", 1), ErrWrongType, 1},
		{"version 2", strings.Replace(g, "chive-descriptor 1", "chive-descriptor 2", 1), ErrUnknownVersion, 1},
		{"no version", strings.Replace(g, "chive-descriptor 1", "chive-descriptor", 1), ErrUnknownVersion, 1},
		{"empty", "", ErrWrongType, 0},
		{"unknown keyword", insertAfter(kwNickname, "contact me@example.com\n"), ErrUnknownKeyword, 3},
		{"duplicate keyword", insertAfter(kwNickname, "nickname Again\n"), ErrDuplicateKeyword, 3},
		{"missing identity", remove(kwIdentity), ErrMissingKeyword, 3},
		{"missing policy", strings.Replace(strings.Replace(strings.Replace(strings.Replace(strings.Replace(strings.Replace(g,
			"reject 10.0.0.0/8:*\n", "", 1), "reject [fc00::]/7:*\n", "", 1), "accept *:80\n", "", 1), "accept *:443\n", "", 1),
			"accept [2001:db8::]/32:6660-6669\n", "", 1), "reject *:*\n", "", 1), ErrMissingKeyword, 0},
		{"missing signature", strings.Join(lines[:len(lines)-1], ""), ErrMissingKeyword, 0},
		{"nickname replaced by identity", replace(kwNickname, "identity "+id+"\n"), ErrMissingKeyword, 2},
		{"identity after published", strings.Replace(remove(kwIdentity), "platform", "identity "+id+"\nplatform", 1), ErrKeywordOrder, 3},
		{"keyword of another document", insertAfter(kwUptime, "chive-descriptor 1\n"), ErrKeywordOrder, lineOf(kwUptime) + 1},
		{"double space", replace(kwNickname, "nickname  RelayA\n"), ErrSyntax, 2},
		{"trailing space", replace(kwNickname, "nickname RelayA \n"), ErrSyntax, 2},
		{"CRLF", replace(kwNickname, "nickname RelayA\r\n"), ErrSyntax, 2},
		{"tab", replace(kwNickname, "nickname\tRelayA\n"), ErrSyntax, 2},
		{"no final newline", strings.TrimSuffix(g, "\n"), ErrSyntax, len(lines)},
		{"empty line", insertAfter(kwNickname, "\n"), ErrSyntax, 3},
		{"upper-case keyword", replace(kwNickname, "Nickname RelayA\n"), ErrSyntax, 2},
		{"not UTF-8", replace(kwPlatform, "platform \xff\xfe\n"), ErrSyntax, 0},
		{"too large", g + strings.Repeat("x", MaxDescriptorSize), ErrTooLarge, 0},
		{"long nickname", replace(kwNickname, "nickname ABCDEFGHIJKLMNOPQRST\n"), ErrBadValue, 2},
		{"nickname punctuation", replace(kwNickname, "nickname Relay-A\n"), ErrBadValue, 2},
		{"two nicknames", replace(kwNickname, "nickname A B\n"), ErrBadValue, 2},
		{"bad identity", replace(kwIdentity, "identity "+id[:42]+"\n"), ErrBadValue, 3},
		{"identity non-canonical base64", replace(kwIdentity, "identity "+id[:42]+nonCanonicalLast(id)+"\n"), ErrBadValue, 3},
		{"time with space", replace(kwPublished, "published 2026-05-01 11:00:00\n"), ErrBadValue, 4},
		{"time with fraction", replace(kwPublished, "published 2026-05-01T11:00:00.5Z\n"), ErrBadValue, 4},
		{"time with offset", replace(kwPublished, "published 2026-05-01T11:00:00+00:00\n"), ErrBadValue, 4},
		{"bandwidth leading zero", replace(kwBandwidth, "bandwidth 01048576\n"), ErrNonCanonical, lineOf(kwBandwidth)},
		{"bandwidth negative", replace(kwBandwidth, "bandwidth -1\n"), ErrBadValue, lineOf(kwBandwidth)},
		{"bandwidth huge", replace(kwBandwidth, "bandwidth 99999999999999999999\n"), ErrBadValue, lineOf(kwBandwidth)},
		{"port 0", replace(kwAddress, "address 203.0.113.5:0\n"), ErrBadValue, lineOf(kwAddress)},
		{"IPv6 in address", replace(kwAddress, "address [2001:db8::5]:9001\n"), ErrBadValue, lineOf(kwAddress)},
		{"IPv4 in address6", replace(kwAddress6, "address6 203.0.113.5:9001\n"), ErrBadValue, lineOf(kwAddress6)},
		{"mapped IPv6", replace(kwAddress6, "address6 [::ffff:203.0.113.5]:9001\n"), ErrBadValue, lineOf(kwAddress6)},
		{"IPv6 upper case", replace(kwAddress6, "address6 [2001:DB8::5]:9001\n"), ErrNonCanonical, lineOf(kwAddress6)},
		{"IPv6 zeros", replace(kwAddress6, "address6 [2001:db8:0::5]:9001\n"), ErrNonCanonical, lineOf(kwAddress6)},
		{"unspecified address", replace(kwAddress, "address 0.0.0.0:9001\n"), ErrBadValue, lineOf(kwAddress)},
		{"delay classes unsorted", replace(kwDelayClasses, "delay-classes 1 0\n"), ErrNonCanonical, lineOf(kwDelayClasses)},
		{"delay classes empty", replace(kwDelayClasses, "delay-classes\n"), ErrBadValue, lineOf(kwDelayClasses)},
		{"delay class 256", replace(kwDelayClasses, "delay-classes 256\n"), ErrBadValue, lineOf(kwDelayClasses)},
		{"proto unsorted", replace(kwProto, "proto Link=1-2 Circuit=1 Relay=1,3-5\n"), ErrNonCanonical, lineOf(kwProto)},
		{"proto non-canonical range", replace(kwProto, "proto Circuit=1 Link=1,2 Relay=1,3-5\n"), ErrBadValue, lineOf(kwProto)},
		{"proto version 64", replace(kwProto, "proto Circuit=64 Link=1-2 Relay=1,3-5\n"), ErrBadValue, lineOf(kwProto)},
		{"family self", replace(kwFamily, "family "+id+"\n"), ErrBadValue, lineOf(kwFamily)},
		{"family unsorted", replace(kwFamily, "family "+d.Family[1].String()+" "+d.Family[0].String()+"\n"), ErrNonCanonical, lineOf(kwFamily)},
		{"family empty", replace(kwFamily, "family\n"), ErrBadValue, lineOf(kwFamily)},
		{"rule non-canonical", strings.Replace(g, "accept *:80\n", "accept *:80-80\n", 1), ErrNonCanonical, 0},
		{"rule bad", strings.Replace(g, "accept *:80\n", "accept *:0\n", 1), ErrBadValue, 0},
		{"no final catch-all", strings.Replace(g, "reject *:*\n", "", 1), ErrBadValue, 0},
		{"signature garbage", replace(kwSignature, "signature abc\n"), ErrBadValue, len(lines)},
		{"second signature", g + lines[len(lines)-1], ErrDuplicateKeyword, len(lines) + 1},
		{"line after signature", g + "nickname X\n", ErrKeywordOrder, len(lines) + 1},
		{"tampered body", strings.Replace(g, "bandwidth 1048576", "bandwidth 1048577", 1), ErrBadSignature, 0},
		{"tampered signature", replace(kwSignature, "signature "+flipSig(lines[len(lines)-1])+"\n"), ErrBadSignature, 0},
	} {
		_, err := ParseDescriptor([]byte(tc.doc), testTime)
		wantErr(t, tc.name, err, tc.want, tc.line)
	}
}

// nonCanonicalLast returns a last base64 character for s that decodes to
// the same bytes only when the unused low bits are ignored.
func nonCanonicalLast(s string) string {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	i := strings.IndexByte(alphabet, s[len(s)-1])
	return string(alphabet[i|1]) // 43 chars carry 2 unused bits; set one
}

// flipSig changes one character of a "signature SIG\n" line's signature.
func flipSig(line string) string {
	sig := strings.TrimSuffix(strings.TrimPrefix(line, "signature "), "\n")
	c := byte('A')
	if sig[10] == 'A' {
		c = 'B'
	}
	return sig[:10] + string(c) + sig[11:]
}

func TestDescriptorTime(t *testing.T) {
	d, k := testDescriptor(t, "A")
	b, err := d.Sign(k)
	if err != nil {
		t.Fatal(err)
	}
	pub := d.Published
	if _, err := ParseDescriptor(b, pub.Add(DefaultDescriptorMaxAge)); err != nil {
		t.Errorf("at exactly max age: %v", err)
	}
	_, err = ParseDescriptor(b, pub.Add(DefaultDescriptorMaxAge+time.Second))
	wantErr(t, "too old", err, ErrExpired, 0)
	if err != nil && !strings.Contains(err.Error(), "expired at 2026-05-02T11:00:00Z") {
		t.Errorf("expiry message %q does not name the time", err)
	}
	if _, err := ParseDescriptor(b, pub.Add(-DefaultDescriptorMaxFuture)); err != nil {
		t.Errorf("at exactly max future skew: %v", err)
	}
	_, err = ParseDescriptor(b, pub.Add(-DefaultDescriptorMaxFuture-time.Second))
	wantErr(t, "from the future", err, ErrNotYetValid, 0)
	lim := DescriptorLimits{MaxAge: time.Minute, MaxFuture: 0}
	_, err = ParseDescriptorWithLimits(b, pub.Add(2*time.Minute), lim)
	wantErr(t, "custom max age", err, ErrExpired, 0)
	if _, err := ParseDescriptorUnverified(b); err != nil {
		t.Errorf("ParseDescriptorUnverified: %v", err)
	}
}

func TestDescriptorSignErrors(t *testing.T) {
	d, k := testDescriptor(t, "A")
	if _, err := d.Sign(identityKey(t, "B")); !errors.Is(err, ErrWrongKey) {
		t.Errorf("Sign with another key: %v", err)
	}
	for _, tc := range []struct {
		name string
		mod  func(*Descriptor)
	}{
		{"sub-second published", func(d *Descriptor) { d.Published = d.Published.Add(time.Millisecond) }},
		{"zero published", func(d *Descriptor) { d.Published = time.Time{} }},
		{"empty nickname", func(d *Descriptor) { d.Nickname = "" }},
		{"platform newline", func(d *Descriptor) { d.Platform = "a\nb" }},
		{"platform trailing space", func(d *Descriptor) { d.Platform = "a " }},
		{"no protocols", func(d *Descriptor) { d.Protocols = nil }},
		{"protocol without versions", func(d *Descriptor) { d.Protocols = Protocols{{"Link", 0}} }},
		{"IPv6 in Addr", func(d *Descriptor) { d.Addr = netip.MustParseAddrPort("[::1]:1") }},
		{"IPv4 in Addr6", func(d *Descriptor) { d.Addr6 = netip.MustParseAddrPort("1.2.3.4:1") }},
		{"no onion key", func(d *Descriptor) { d.OnionKey = [32]byte{} }},
		{"bandwidth", func(d *Descriptor) { d.Bandwidth = MaxBandwidth + 1 }},
		{"uptime fraction", func(d *Descriptor) { d.Uptime = 1500 * time.Millisecond }},
		{"no delay class", func(d *Descriptor) { d.DelayClasses = nil }},
		{"unsorted family", func(d *Descriptor) { d.Family[0], d.Family[1] = d.Family[1], d.Family[0] }},
		{"bad policy", func(d *Descriptor) { d.Policy.Rules[0].Ports = exitpolicy.PortRange{} }},
	} {
		d, k := testDescriptor(t, "A")
		tc.mod(d)
		if _, err := d.Sign(k); !errors.Is(err, ErrBadValue) && !errors.Is(err, ErrNonCanonical) {
			t.Errorf("%s: Sign error = %v, want ErrBadValue", tc.name, err)
		}
	}
	_ = k
}

func TestNormalizeFamily(t *testing.T) {
	self := identityKey(t, "self").ID()
	a, b := identityKey(t, "a").ID(), identityKey(t, "b").ID()
	got := NormalizeFamily(self, []layercrypt.RelayID{b, self, a, b, {}})
	if len(got) != 2 || compareIDs(got[0], got[1]) >= 0 || (got[0] != a && got[0] != b) {
		t.Errorf("NormalizeFamily = %v", got)
	}
	if NormalizeFamily(self, []layercrypt.RelayID{self}) != nil {
		t.Error("NormalizeFamily(self only) != nil")
	}
}

func BenchmarkParseDescriptor(b *testing.B) {
	d, k := testDescriptor(b, "A")
	d.Policy = d.Policy.WithRejectPrivate(d.Addr.Addr(), d.Addr6.Addr())
	doc, err := d.Sign(k)
	if err != nil {
		b.Fatal(err)
	}
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ParseDescriptor(doc, testTime); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkSignDescriptor(b *testing.B) {
	d, k := testDescriptor(b, "A")
	b.ReportAllocs()
	for b.Loop() {
		if _, err := d.Sign(k); err != nil {
			b.Fatal(err)
		}
	}
}

func TestAddrPortCanonical(t *testing.T) {
	for _, tc := range []struct {
		s    string
		v6   bool
		want error
	}{
		{"203.0.113.5:9001", false, nil},
		{"203.0.113.5:09001", false, ErrNonCanonical},
		{"203.0.113.05:9001", false, ErrBadValue},
		{"203.0.113.5:+9001", false, ErrBadValue},
		{"203.0.113.5", false, ErrBadValue},
		{"[2001:db8::5]:9001", true, nil},
		{"[2001:db8::5]:09001", true, ErrNonCanonical},
		{"[2001:0db8::5]:9001", true, ErrNonCanonical},
		{"[::ffff:1.2.3.4]:9001", true, ErrBadValue},
		{"[fe80::1%eth0]:9001", true, ErrBadValue},
		{"[2001:db8::5]:65536", true, ErrBadValue},
	} {
		_, err := parseAddrPort(tc.s, tc.v6)
		if (tc.want == nil) != (err == nil) || (tc.want != nil && !errors.Is(err, tc.want)) {
			t.Errorf("parseAddrPort(%q) error = %v, want %v", tc.s, err, tc.want)
		}
	}
}
