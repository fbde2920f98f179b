package netdoc

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/chive-net/chive/layercrypt"
)

// Value limits.
const (
	MaxNicknameLen     = 19
	MaxPlatformLen     = 256
	MaxFamily          = 256     // relay IDs in one family line
	MaxDelayClasses    = 16      // delay classes one relay serves
	MaxProtocols       = 32      // protocol names in one proto line
	MaxProtocolNameLen = 32      //
	MaxProtocolVersion = 63      // versions are 0..63
	MaxBandwidth       = 1 << 40 // bytes/s (about 1.1 TB/s); keeps sums over 10^6 relays far from overflow
	MaxUptime          = 1 << 32 // seconds (136 years)
	MaxVotingPeriod    = 7 * 24 * time.Hour
	DigestLen          = sha256.Size
)

// b64 is how keys, digests and signatures are written: standard base64
// without padding, and strict, so that the unused low bits of the last
// character must be zero and every value has exactly one text.
var b64 = base64.RawStdEncoding.Strict()

const (
	keyTextLen = 43 // 32 bytes
	sigTextLen = 86 // 64 bytes
)

// timeLayout is how times are written: RFC 3339 in UTC, whole seconds.
const timeLayout = "2006-01-02T15:04:05Z"

func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

func appendTime(b []byte, t time.Time) []byte { return t.UTC().AppendFormat(b, timeLayout) }

// checkTime checks that t can be written exactly: whole seconds, year
// 1970-9999.
func checkTime(what string, t time.Time) error {
	if t.IsZero() {
		return errorf(ErrBadValue, "%s is not set", what)
	}
	if t.Nanosecond() != 0 {
		return errorf(ErrBadValue, "%s %s has sub-second precision; truncate it to whole seconds", what, t)
	}
	if y := t.UTC().Year(); y < 1970 || y > 9999 {
		return errorf(ErrBadValue, "%s year %d is outside 1970-9999", what, y)
	}
	return nil
}

func parseTime(s string) (time.Time, error) {
	if len(s) != len(timeLayout) {
		return time.Time{}, errorf(ErrBadValue, "time %q: want YYYY-MM-DDTHH:MM:SSZ (UTC)", s)
	}
	t, err := time.Parse(timeLayout, s)
	if err != nil {
		return time.Time{}, errorf(ErrBadValue, "time %q: want YYYY-MM-DDTHH:MM:SSZ (UTC)", s)
	}
	if t.Year() < 1970 {
		return time.Time{}, errorf(ErrBadValue, "time %q is before 1970", s)
	}
	if formatTime(t) != s {
		return time.Time{}, errorf(ErrNonCanonical, "time %q; write %q", s, formatTime(t))
	}
	return t, nil
}

// parseUint parses a canonical decimal number (no sign, no leading zeros)
// no larger than max.
func parseUint(s string, max uint64) (uint64, error) {
	if s == "" || len(s) > 20 {
		return 0, errorf(ErrBadValue, "number %q", s)
	}
	var n uint64
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return 0, errorf(ErrBadValue, "number %q", s)
		}
		d := uint64(c - '0')
		if d > max || n > (max-d)/10 {
			return 0, errorf(ErrBadValue, "number %s is larger than %d", s, max)
		}
		n = n*10 + d
	}
	if s[0] == '0' && len(s) > 1 {
		return 0, errorf(ErrNonCanonical, "number %q has leading zeros; write %d", s, n)
	}
	return n, nil
}

func appendUint(b []byte, n uint64) []byte { return strconv.AppendUint(b, n, 10) }

// appendDuration writes a whole-second duration as its number of seconds.
func appendDuration(b []byte, d time.Duration) []byte {
	return strconv.AppendInt(b, int64(d/time.Second), 10)
}

func parseSeconds(s string, max time.Duration) (time.Duration, error) {
	n, err := parseUint(s, uint64(max/time.Second))
	return time.Duration(n) * time.Second, err
}

func checkSeconds(what string, d time.Duration, min, max time.Duration) error {
	if d%time.Second != 0 {
		return errorf(ErrBadValue, "%s %s is not a whole number of seconds", what, d)
	}
	if d < min || d > max {
		return errorf(ErrBadValue, "%s %s is outside %s-%s", what, d, min, max)
	}
	return nil
}

// b64Index maps a base64 character to its 6-bit value, or 0xff.
var b64Index = func() (t [256]byte) {
	const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/"
	for i := range t {
		t[i] = 0xff
	}
	for i := 0; i < len(alphabet); i++ {
		t[alphabet[i]] = byte(i)
	}
	return t
}()

// decodeB64 decodes strict unpadded base64 into dst, which must be exactly
// the decoded length of s. It is what b64.Decode does, without converting
// the string to a byte slice (which would allocate for every key in a
// consensus). Unused low bits of the last character must be zero.
func decodeB64(dst []byte, s string) bool {
	if len(s) != (len(dst)*8+5)/6 || len(s)%4 == 1 {
		return false
	}
	di := 0
	si := 0
	for ; si+4 <= len(s); si += 4 {
		a, b, c, d := b64Index[s[si]], b64Index[s[si+1]], b64Index[s[si+2]], b64Index[s[si+3]]
		if a|b|c|d == 0xff || (a|b|c|d)&0xc0 != 0 {
			return false
		}
		v := uint32(a)<<18 | uint32(b)<<12 | uint32(c)<<6 | uint32(d)
		dst[di], dst[di+1], dst[di+2] = byte(v>>16), byte(v>>8), byte(v)
		di += 3
	}
	switch len(s) - si {
	case 2:
		a, b := b64Index[s[si]], b64Index[s[si+1]]
		if (a|b)&0xc0 != 0 || b&0x0f != 0 {
			return false
		}
		dst[di] = a<<2 | b>>4
	case 3:
		a, b, c := b64Index[s[si]], b64Index[s[si+1]], b64Index[s[si+2]]
		if (a|b|c)&0xc0 != 0 || c&0x03 != 0 {
			return false
		}
		v := uint32(a)<<12 | uint32(b)<<6 | uint32(c)
		dst[di], dst[di+1] = byte(v>>10), byte(v>>2)
	}
	return true
}

// decode32 decodes a 32-byte value written in strict unpadded base64.
func decode32(what, s string) ([32]byte, error) {
	var out [32]byte
	if len(s) != keyTextLen {
		return out, errorf(ErrBadValue, "%s %q: want %d characters of unpadded base64", what, s, keyTextLen)
	}
	if !decodeB64(out[:], s) {
		return out, errorf(ErrBadValue, "%s %q is not valid canonical base64", what, s)
	}
	return out, nil
}

func append32(b []byte, v [32]byte) []byte { return b64.AppendEncode(b, v[:]) }

func parseID(s string) (layercrypt.RelayID, error) {
	v, err := decode32("relay ID", s)
	if err != nil {
		return layercrypt.RelayID{}, err
	}
	id := layercrypt.RelayID(v)
	if id.IsZero() {
		return id, errorf(ErrBadValue, "relay ID is all zeros")
	}
	return id, nil
}

func parseOnionKey(s string) (layercrypt.OnionPublicKey, error) {
	v, err := decode32("onion key", s)
	if err != nil {
		return layercrypt.OnionPublicKey{}, err
	}
	k := layercrypt.OnionPublicKey(v)
	if k.IsZero() {
		return k, errorf(ErrBadValue, "onion key is all zeros")
	}
	return k, nil
}

func parseSig(s string) ([layercrypt.SignatureLen]byte, error) {
	var out [layercrypt.SignatureLen]byte
	if len(s) != sigTextLen {
		return out, errorf(ErrBadValue, "signature: want %d characters of unpadded base64, found %d", sigTextLen, len(s))
	}
	if !decodeB64(out[:], s) {
		return out, errorf(ErrBadValue, "signature is not valid canonical base64")
	}
	return out, nil
}

// Digest is a SHA-256 digest of a document's bytes, written in unpadded
// base64 (43 characters).
type Digest [DigestLen]byte

// String returns the unpadded base64 form.
func (d Digest) String() string { return b64.EncodeToString(d[:]) }

// IsZero reports whether d is unset.
func (d Digest) IsZero() bool { return d == Digest{} }

// MarshalText implements encoding.TextMarshaler.
func (d Digest) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Digest) UnmarshalText(b []byte) error {
	v, err := decode32("digest", string(b))
	if err != nil {
		return err
	}
	*d = v
	return nil
}

func compareIDs(a, b layercrypt.RelayID) int { return bytes.Compare(a[:], b[:]) }

// checkNickname: 1-19 ASCII letters and digits.
func checkNickname(s string) error {
	if s == "" || len(s) > MaxNicknameLen {
		return errorf(ErrBadValue, "nickname %q: want 1-%d letters and digits", s, MaxNicknameLen)
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') && (c < '0' || c > '9') {
			return errorf(ErrBadValue, "nickname %q: want 1-%d letters and digits", s, MaxNicknameLen)
		}
	}
	return nil
}

// checkPlatform: printable UTF-8 up to MaxPlatformLen bytes, single spaces,
// no leading or trailing space (it is written as the rest of a line).
func checkPlatform(s string) error {
	if len(s) > MaxPlatformLen {
		return errorf(ErrBadValue, "platform is %d bytes; at most %d", len(s), MaxPlatformLen)
	}
	if s == "" {
		return nil
	}
	if s[0] == ' ' || s[len(s)-1] == ' ' || strings.Contains(s, "  ") {
		return errorf(ErrBadValue, "platform %q has leading, trailing or double spaces", s)
	}
	for _, r := range s {
		if r < 0x20 || r == 0x7f || r == 0xfffd {
			return errorf(ErrBadValue, "platform %q has a control character or invalid UTF-8", s)
		}
	}
	return nil
}

// checkAddr4 and checkAddr6 define the relay addresses documents accept:
// unicast, with a port. Private and loopback addresses are allowed here (a
// test network runs on 127.0.0.1); authorities decide whether to vote such
// relays Valid.
func checkAddr4(ap netip.AddrPort) error {
	a := ap.Addr()
	if !a.Is4() {
		return errorf(ErrBadValue, "address %s is not IPv4", ap)
	}
	return checkAddrCommon(ap)
}

func checkAddr6(ap netip.AddrPort) error {
	a := ap.Addr()
	if !a.Is6() || a.Is4In6() || a.Zone() != "" {
		return errorf(ErrBadValue, "address %s is not a plain IPv6 address", ap)
	}
	return checkAddrCommon(ap)
}

func checkAddrCommon(ap netip.AddrPort) error {
	a := ap.Addr()
	if ap.Port() == 0 {
		return errorf(ErrBadValue, "address %s has port 0", ap)
	}
	if a.IsUnspecified() || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255}) {
		return errorf(ErrBadValue, "address %s is not a unicast address", ap)
	}
	return nil
}

func parseAddrPort(s string, v6 bool) (netip.AddrPort, error) {
	ap, err := netip.ParseAddrPort(s)
	if err != nil {
		return ap, errorf(ErrBadValue, "address %q: want IPv4:PORT or [IPv6]:PORT", s)
	}
	if v6 {
		err = checkAddr6(ap)
	} else {
		err = checkAddr4(ap)
	}
	if err != nil {
		return ap, err
	}
	// netip accepts only one spelling of an IPv4 address (no leading
	// zeros), but any spelling of a port; IPv6 has many spellings.
	canonical := false
	if !v6 {
		port := s[strings.LastIndexByte(s, ':')+1:]
		canonical = port[0] != '0'
	} else {
		var buf [64]byte
		canonical = string(ap.AppendTo(buf[:0])) == s
	}
	if !canonical {
		return ap, errorf(ErrNonCanonical, "address %q; write %q", s, ap)
	}
	return ap, nil
}

// checkFamily: sorted by ID bytes, no duplicates, not the relay itself.
func checkFamily(self layercrypt.RelayID, fam []layercrypt.RelayID) error {
	if len(fam) > MaxFamily {
		return errorf(ErrBadValue, "family lists %d relays; at most %d", len(fam), MaxFamily)
	}
	for i, id := range fam {
		if id.IsZero() {
			return errorf(ErrBadValue, "family member %d is the zero ID", i+1)
		}
		if id == self {
			return errorf(ErrBadValue, "family lists the relay itself; remove it (see NormalizeFamily)")
		}
		if i > 0 && compareIDs(fam[i-1], id) >= 0 {
			return errorf(ErrNonCanonical, "family is not sorted by ID without duplicates (see NormalizeFamily)")
		}
	}
	return nil
}

// NormalizeFamily returns ids sorted by ID bytes, without duplicates, zero
// IDs or self: the form documents require.
func NormalizeFamily(self layercrypt.RelayID, ids []layercrypt.RelayID) []layercrypt.RelayID {
	out := make([]layercrypt.RelayID, 0, len(ids))
	for _, id := range ids {
		if !id.IsZero() && id != self {
			out = append(out, id)
		}
	}
	slices.SortFunc(out, compareIDs)
	out = slices.Compact(out)
	if len(out) == 0 {
		return nil
	}
	return out
}

func appendFamily(b []byte, fam []layercrypt.RelayID) []byte {
	for i, id := range fam {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append32(b, id)
	}
	return b
}

func parseFamily(args []string) ([]layercrypt.RelayID, error) {
	if len(args) > MaxFamily {
		return nil, errorf(ErrBadValue, "family lists %d relays; at most %d", len(args), MaxFamily)
	}
	fam := make([]layercrypt.RelayID, len(args))
	for i, a := range args {
		id, err := parseID(a)
		if err != nil {
			return nil, err
		}
		if i > 0 && compareIDs(fam[i-1], id) >= 0 {
			return nil, errorf(ErrNonCanonical, "family is not sorted by ID bytes without duplicates")
		}
		fam[i] = id
	}
	return fam, nil
}

// checkDelayClasses: 1..MaxDelayClasses classes, strictly ascending.
func checkDelayClasses(dc []uint8) error {
	if len(dc) == 0 || len(dc) > MaxDelayClasses {
		return errorf(ErrBadValue, "%d delay classes; want 1-%d", len(dc), MaxDelayClasses)
	}
	for i := 1; i < len(dc); i++ {
		if dc[i-1] >= dc[i] {
			return errorf(ErrNonCanonical, "delay classes %v are not strictly ascending", dc)
		}
	}
	return nil
}

func appendDelayClasses(b []byte, dc []uint8) []byte {
	for i, c := range dc {
		if i > 0 {
			b = append(b, ' ')
		}
		b = strconv.AppendUint(b, uint64(c), 10)
	}
	return b
}

func parseDelayClasses(args []string) ([]uint8, error) {
	if len(args) == 0 || len(args) > MaxDelayClasses {
		return nil, errorf(ErrBadValue, "%d delay classes; want 1-%d", len(args), MaxDelayClasses)
	}
	dc := make([]uint8, len(args))
	for i, a := range args {
		n, err := parseUint(a, 255)
		if err != nil {
			return nil, err
		}
		dc[i] = uint8(n)
		if i > 0 && dc[i-1] >= dc[i] {
			return nil, errorf(ErrNonCanonical, "delay classes are not strictly ascending")
		}
	}
	return dc, nil
}

// VersionSet is a set of protocol versions 0..63, bit v for version v.
type VersionSet uint64

// Has reports whether v is in the set.
func (s VersionSet) Has(v uint) bool { return v <= MaxProtocolVersion && s&(1<<v) != 0 }

// Versions builds a set from a list of versions (values above 63 are
// ignored).
func Versions(vs ...uint) VersionSet {
	var s VersionSet
	for _, v := range vs {
		if v <= MaxProtocolVersion {
			s |= 1 << v
		}
	}
	return s
}

// String writes the set as ascending ranges: "1", "1-3", "1,4-6".
func (s VersionSet) String() string { return string(s.appendText(nil)) }

func (s VersionSet) appendText(b []byte) []byte {
	first := true
	for v := uint(0); v <= MaxProtocolVersion; v++ {
		if !s.Has(v) {
			continue
		}
		hi := v
		for hi < MaxProtocolVersion && s.Has(hi+1) {
			hi++
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = strconv.AppendUint(b, uint64(v), 10)
		if hi > v {
			b = append(b, '-')
			b = strconv.AppendUint(b, uint64(hi), 10)
		}
		v = hi
	}
	return b
}

func parseVersionSet(s string) (VersionSet, error) {
	var set VersionSet
	next := uint64(0)
	for item := range strings.SplitSeq(s, ",") {
		lo, hi, isRange := strings.Cut(item, "-")
		l, err := parseUint(lo, MaxProtocolVersion)
		if err != nil {
			return 0, err
		}
		h := l
		if isRange {
			if h, err = parseUint(hi, MaxProtocolVersion); err != nil {
				return 0, err
			}
		}
		if h < l || (len(item) > 0 && l < next) {
			return 0, errorf(ErrBadValue, "versions %q are not ascending ranges", s)
		}
		for v := l; v <= h; v++ {
			set |= 1 << v
		}
		next = h + 2
	}
	if set.String() != s {
		return 0, errorf(ErrNonCanonical, "versions %q; write %q", s, set.String())
	}
	return set, nil
}

// Protocol is one named sub-protocol and the versions a relay speaks.
type Protocol struct {
	Name     string
	Versions VersionSet
}

// Protocols is a relay's protocol list, sorted by Name (byte order) with
// no repeated names, written like "Circuit=1 Link=1-2 Relay=1".
type Protocols []Protocol

// Supports reports whether the list has version v of protocol name.
func (p Protocols) Supports(name string, v uint) bool {
	for _, e := range p {
		if e.Name == name {
			return e.Versions.Has(v)
		}
	}
	return false
}

// String returns the canonical text.
func (p Protocols) String() string { return string(p.appendText(nil)) }

func (p Protocols) appendText(b []byte) []byte {
	for i, e := range p {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, e.Name...)
		b = append(b, '=')
		b = e.Versions.appendText(b)
	}
	return b
}

// Equal reports whether two lists are identical.
func (p Protocols) Equal(o Protocols) bool { return slices.Equal(p, o) }

// Validate checks names, order and that every entry has a version.
func (p Protocols) Validate() error {
	if len(p) == 0 || len(p) > MaxProtocols {
		return errorf(ErrBadValue, "%d protocols; want 1-%d", len(p), MaxProtocols)
	}
	for i, e := range p {
		if err := checkProtoName(e.Name); err != nil {
			return err
		}
		if e.Versions == 0 {
			return errorf(ErrBadValue, "protocol %s has no versions", e.Name)
		}
		if i > 0 && p[i-1].Name >= e.Name {
			return errorf(ErrNonCanonical, "protocols are not sorted by name without duplicates")
		}
	}
	return nil
}

func checkProtoName(s string) error {
	if s == "" || len(s) > MaxProtocolNameLen || !isLetter(s[0]) {
		return errorf(ErrBadValue, "protocol name %q: want a letter then letters and digits, at most %d", s, MaxProtocolNameLen)
	}
	for i := 1; i < len(s); i++ {
		if !isLetter(s[i]) && (s[i] < '0' || s[i] > '9') {
			return errorf(ErrBadValue, "protocol name %q: want a letter then letters and digits", s)
		}
	}
	return nil
}

func isLetter(c byte) bool { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') }

func parseProtocols(args []string) (Protocols, error) {
	if len(args) == 0 || len(args) > MaxProtocols {
		return nil, errorf(ErrBadValue, "%d protocols; want 1-%d", len(args), MaxProtocols)
	}
	p := make(Protocols, len(args))
	for i, a := range args {
		name, vers, ok := strings.Cut(a, "=")
		if !ok {
			return nil, errorf(ErrBadValue, "protocol %q: want NAME=VERSIONS", a)
		}
		if err := checkProtoName(name); err != nil {
			return nil, err
		}
		vs, err := parseVersionSet(vers)
		if err != nil {
			return nil, err
		}
		if i > 0 && p[i-1].Name >= name {
			return nil, errorf(ErrNonCanonical, "protocols are not sorted by name without duplicates")
		}
		p[i] = Protocol{Name: strings.Clone(name), Versions: vs}
	}
	return p, nil
}

// Flags is the set of flags an authority (or the consensus) assigns a relay.
type Flags uint8

// The flags, in their canonical (alphabetical) order.
const (
	FlagExit    Flags = 1 << iota // allows exits to common ports (see AssignFlags)
	FlagFast                      // bandwidth high enough for most circuits
	FlagGuard                     // suitable as a client's first hop
	FlagRunning                   // reachable by the authority
	FlagStable                    // up long enough for long-lived streams
	FlagValid                     // the authority accepts the relay in the network

	AllFlags = FlagExit | FlagFast | FlagGuard | FlagRunning | FlagStable | FlagValid
)

var flagNames = [...]string{"Exit", "Fast", "Guard", "Running", "Stable", "Valid"}

// Has reports whether every flag in x is set.
func (f Flags) Has(x Flags) bool { return f&x == x }

// String returns the flag names separated by spaces, in canonical order.
func (f Flags) String() string { return string(f.appendText(nil)) }

func (f Flags) appendText(b []byte) []byte {
	first := true
	for i, name := range flagNames {
		if f&(1<<i) == 0 {
			continue
		}
		if !first {
			b = append(b, ' ')
		}
		first = false
		b = append(b, name...)
	}
	return b
}

func parseFlags(args []string) (Flags, error) {
	var f Flags
	last := -1
	for _, a := range args {
		i := slices.Index(flagNames[:], a)
		if i < 0 {
			return 0, errorf(ErrBadValue, "unknown flag %q (known: %s)", a, AllFlags)
		}
		if i <= last {
			return 0, errorf(ErrNonCanonical, "flags are not in the order %s without repeats", AllFlags)
		}
		last = i
		f |= 1 << i
	}
	return f, nil
}
