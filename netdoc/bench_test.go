package netdoc

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chive-net/chive/exitpolicy"
	"github.com/chive-net/chive/layercrypt"
)

// Summaries seen on a real network: most relays are not exits, some allow
// web ports, some run Tor's reduced/default-like policies.
var benchSummaries = []string{
	"reject 1-65535", "reject 1-65535", "reject 1-65535", "reject 1-65535", "reject 1-65535",
	"reject 1-65535", "reject 1-65535", "accept 80,443", "accept 1-65535",
	"reject 25,119,135-139,445,563,1214,4661-4666,6346-6429,6699,6881-6999",
	"accept 20-23,43,53,79-81,88,110,143,194,220,389,443,464-465,531,543-544,554,563,587,636,706,749,853,873,902-904,981,989-995,1194,1220,1293,1500,1533,1677,1723,1755,1863,2082-2083,2086-2087,2095-2096,2102-2104,3128,3389,3690,4321,4643,5050,5190,5222-5223,5228,5900,6660-6669,6679,6697,8000,8008,8074,8080,8082,8087-8088,8232-8233,8332-8333,8443,8888,9418,9999-10000,11371,19294,19638,50002,64738",
}

// benchRelay is one synthetic relay; its ID and keys come from its index.
func benchRelay(i int, rng *rand.Rand, sums []exitpolicy.Summary) VoteEntry {
	var seed [8]byte
	binary.BigEndian.PutUint64(seed[:], uint64(i))
	id := sha256.Sum256(append([]byte("id"), seed[:]...))
	ok := sha256.Sum256(append([]byte("onion"), seed[:]...))
	e := VoteEntry{
		RelayStatus: RelayStatus{
			Nickname:     fmt.Sprintf("relay%05d", i),
			ID:           layercrypt.RelayID(id),
			OnionKey:     layercrypt.OnionPublicKey(ok),
			Addr:         netip.AddrPortFrom(netip.AddrFrom4([4]byte{byte(1 + i>>16), byte(i >> 8), byte(i), 1}), 9001),
			Flags:        FlagRunning | FlagValid | FlagFast,
			ExitPolicy:   sums[i%len(sums)],
			DelayClasses: []uint8{0, 1, 2},
			Protocols:    Protocols{{"Circuit", Versions(1)}, {"Link", Versions(1)}, {"Relay", Versions(1)}},
		},
		Advertised: 50<<10 + uint64(rng.IntN(50<<20)),
		Descriptor: Digest(sha256.Sum256(append([]byte("desc"), seed[:]...))),
		Published:  testTime.Add(-time.Duration(rng.IntN(18*3600)) * time.Second),
	}
	if i%3 == 0 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, byte(i >> 16), byte(i >> 8), byte(i), 15: 1})
		e.Addr6 = netip.AddrPortFrom(a, 9001)
	}
	if i%4 == 0 {
		e.Flags |= FlagStable
	}
	if i%5 == 0 {
		e.Flags |= FlagGuard | FlagStable
	}
	if e.ExitPolicy.AllowsPort(80) && e.ExitPolicy.AllowsPort(443) {
		e.Flags |= FlagExit
	}
	return e
}

// benchNetwork makes the votes of n authorities about relays: each
// authority misses 2% of relays, sees its own bandwidth (±10%), and
// disagrees on Stable for 3% of relays. Families: every 10th relay is in a
// family with the next two.
func benchNetwork(tb testing.TB, relays, nauth int) ([]*Vote, []*layercrypt.IdentityKey, []layercrypt.RelayID) {
	keys, ids := authorities(tb, nauth)
	sums := make([]exitpolicy.Summary, len(benchSummaries))
	for i, s := range benchSummaries {
		var err error
		if sums[i], err = exitpolicy.ParseSummary(s); err != nil {
			tb.Fatal(err)
		}
	}
	rng := rand.New(rand.NewPCG(1, 2))
	base := make([]VoteEntry, relays)
	for i := range base {
		base[i] = benchRelay(i, rng, sums)
	}
	for i := 0; i+2 < relays; i += 10 {
		fam := []layercrypt.RelayID{base[i].ID, base[i+1].ID, base[i+2].ID}
		for j := i; j < i+3; j++ {
			base[j].Family = NormalizeFamily(base[j].ID, fam)
		}
	}
	sortEntries(base)
	votes := make([]*Vote, nauth)
	for a := range votes {
		var es []VoteEntry
		for _, e := range base {
			if rng.IntN(50) == 0 {
				continue
			}
			e.Advertised = e.Advertised * uint64(90+rng.IntN(21)) / 100
			if rng.IntN(33) == 0 {
				e.Flags ^= FlagStable
				e.Flags &^= FlagGuard
			}
			es = append(es, e)
		}
		votes[a] = newVote(keys[a], es)
	}
	return votes, keys, ids
}

// signedDoc computes the consensus of votes and has every authority sign it.
func signedDoc(tb testing.TB, votes []*Vote, keys []*layercrypt.IdentityKey, ids []layercrypt.RelayID) (*Consensus, []byte) {
	c, err := ComputeConsensus(votes, ids)
	if err != nil {
		tb.Fatal(err)
	}
	body := c.Body()
	for _, k := range keys {
		if err := c.AddSignature(SignConsensus(body, k)); err != nil {
			tb.Fatal(err)
		}
	}
	return c, c.Encode()
}

func gzipSize(tb testing.TB, b []byte) int {
	var buf bytes.Buffer
	w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
	if err != nil {
		tb.Fatal(err)
	}
	w.Write(b)
	w.Close()
	return buf.Len()
}

var benchSizes = []int{100, 1000, 10000}

// BenchmarkComputeConsensus: three authorities' votes -> consensus body.
func BenchmarkComputeConsensus(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("relays=%d", n), func(b *testing.B) {
			votes, keys, ids := benchNetwork(b, n, 3)
			c, doc := signedDoc(b, votes, keys, ids)
			b.ReportAllocs()
			t0, ops := cpuTime(), 0
			for b.Loop() {
				c, err := ComputeConsensus(votes, ids)
				if err != nil {
					b.Fatal(err)
				}
				_ = c.Body()
				ops++
			}
			b.ReportMetric(float64(cpuTime()-t0)/float64(ops), "cpu-ns/op")
			b.ReportMetric(float64(len(c.Relays)), "listed")
			b.ReportMetric(float64(len(doc)), "doc-bytes")
			b.ReportMetric(float64(gzipSize(b, doc)), "gzip-bytes")
		})
	}
}

// BenchmarkParseConsensus: what a client does with a fetched consensus:
// parse, verify three signatures, check the time.
func BenchmarkParseConsensus(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("relays=%d", n), func(b *testing.B) {
			votes, keys, ids := benchNetwork(b, n, 3)
			_, doc := signedDoc(b, votes, keys, ids)
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			t0, ops := cpuTime(), 0
			for b.Loop() {
				if _, err := ParseConsensus(doc, ids, testTime); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			b.ReportMetric(float64(cpuTime()-t0)/float64(ops), "cpu-ns/op")
		})
	}
}

// BenchmarkParseVote: what an authority does with each vote it fetches.
func BenchmarkParseVote(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("relays=%d", n), func(b *testing.B) {
			votes, keys, ids := benchNetwork(b, n, 3)
			doc, err := votes[0].Sign(keys[0])
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(doc)))
			b.ReportAllocs()
			t0, ops := cpuTime(), 0
			for b.Loop() {
				if _, err := ParseVote(doc, ids, testTime); err != nil {
					b.Fatal(err)
				}
				ops++
			}
			b.ReportMetric(float64(cpuTime()-t0)/float64(ops), "cpu-ns/op")
		})
	}
}

// BenchmarkConsensusDiff sizes an hourly consensus diff at 10,000 relays.
// Churn per hour (pessimistic for bandwidth, which today changes only when
// a relay republishes its descriptor): 1% of relays leave and 1% join, 10%
// change bandwidth, 1% change flags, 1/168 rotate their onion key (weekly).
// The diff is an ed-style script like Tor's consensus diffs (prop. 140):
// "Nc" replacing changed lines, "N,Md" deleting departed entries, "Na"
// adding new ones, and the new signature lines. Nothing in netdoc serves
// diffs yet: this sizes them for the scaling notes in docs/DIRECTORY.md.
func BenchmarkConsensusDiff(b *testing.B) {
	const n = 10000
	votes, keys, ids := benchNetwork(b, n, 3)
	c1, doc1 := signedDoc(b, votes, keys, ids)
	c2 := churn(b, c1, keys, n)
	var diff []byte
	for b.Loop() {
		diff = edDiff(c1, c2)
	}
	b.ReportMetric(float64(len(doc1)), "doc-bytes")
	b.ReportMetric(float64(gzipSize(b, doc1)), "doc-gzip-bytes")
	b.ReportMetric(float64(len(diff)), "diff-bytes")
	b.ReportMetric(float64(gzipSize(b, diff)), "diff-gzip-bytes")
}

// TestEdDiff checks that the diffs BenchmarkConsensusDiff sizes are real:
// applied to the old document they give the new one.
func TestEdDiff(t *testing.T) {
	votes, keys, ids := benchNetwork(t, 300, 3)
	c1, doc1 := signedDoc(t, votes, keys, ids)
	c2 := churn(t, c1, keys, 300)
	got := applyEd(t, string(doc1), string(edDiff(c1, c2)))
	if want := string(c2.Encode()); got != want {
		t.Fatalf("applying the diff:\n%s", lineDiff([]byte(want), []byte(got)))
	}
}

// churn returns the next hour's signed consensus after c1 (see
// BenchmarkConsensusDiff for the rates).
func churn(tb testing.TB, c1 *Consensus, keys []*layercrypt.IdentityKey, n int) *Consensus {
	rng := rand.New(rand.NewPCG(3, 4))
	c2 := *c1
	c2.Relays = nil
	c2.Signatures = nil
	c2.ValidAfter = c1.ValidAfter.Add(time.Hour)
	c2.FreshUntil, c2.ValidUntil = PeriodTimes(c2.ValidAfter, time.Hour)
	sums := []exitpolicy.Summary{c1.Relays[0].ExitPolicy}
	for _, e := range c1.Relays {
		switch r := rng.IntN(1000); {
		case r < 10: // left
			continue
		case r < 110:
			e.Bandwidth = e.Bandwidth * uint64(80+rng.IntN(41)) / 100
		case r < 120:
			e.Flags ^= FlagStable
		case r < 126:
			e.OnionKey[0] ^= 1
		}
		c2.Relays = append(c2.Relays, e)
	}
	for i := range max(n/100, 3) { // joined
		e := benchRelay(n+i, rng, sums)
		c2.Relays = append(c2.Relays, ConsensusEntry{RelayStatus: e.RelayStatus, Bandwidth: e.Advertised})
	}
	slices.SortFunc(c2.Relays, func(a, b ConsensusEntry) int { return compareIDs(a.ID, b.ID) })
	body2 := c2.Body()
	for _, k := range keys {
		if err := c2.AddSignature(SignConsensus(body2, k)); err != nil {
			tb.Fatal(err)
		}
	}
	return &c2
}

// applyEd applies a script from edDiff (commands in ascending line order).
func applyEd(tb testing.TB, doc, script string) string {
	old := strings.SplitAfter(doc, "\n")
	old = old[:len(old)-1]
	var out []string
	next := 1               // next old line (1-based) not yet copied
	copyTo := func(n int) { // copy old lines up to and including n
		for ; next <= n; next++ {
			out = append(out, old[next-1])
		}
	}
	cmds := strings.SplitAfter(script, "\n")
	for k := 0; k < len(cmds) && cmds[k] != ""; k++ {
		cmd := strings.TrimSuffix(cmds[k], "\n")
		op := cmd[len(cmd)-1]
		rng := cmd[:len(cmd)-1]
		var from, to int
		if a, b, ok := strings.Cut(rng, ","); ok {
			fmt.Sscan(a, &from)
			if b == "$" {
				to = len(old)
			} else {
				fmt.Sscan(b, &to)
			}
		} else {
			fmt.Sscan(rng, &from)
			to = from
		}
		var text []string
		if op == 'a' || op == 'c' {
			for k++; cmds[k] != ".\n"; k++ {
				text = append(text, cmds[k])
			}
		}
		switch op {
		case 'a':
			copyTo(from)
			out = append(out, text...)
		case 'c', 'd':
			copyTo(from - 1)
			next = to + 1
			out = append(out, text...)
		default:
			tb.Fatalf("bad ed command %q", cmd)
		}
	}
	copyTo(len(old))
	return strings.Join(out, "")
}

// edDiff writes an ed-style script turning a's document into b's, using
// the fact that both list entries sorted by ID.
func edDiff(a, b *Consensus) []byte {
	lines := func(buf []byte) []string { return strings.SplitAfter(string(buf), "\n") }
	var out []byte
	lineNo := 1
	// changed replaces old lines with new ones, line by line when the
	// counts match, as one block otherwise.
	changed := func(old, new []string) {
		if len(old) == len(new) {
			for i := range old {
				if old[i] != new[i] {
					out = fmt.Appendf(out, "%dc\n%s.\n", lineNo+i, new[i])
				}
			}
		} else {
			out = fmt.Appendf(out, "%d,%dc\n%s.\n", lineNo, lineNo+len(old)-1, strings.Join(new, ""))
		}
		lineNo += len(old)
	}
	headA, headB := *a, *b
	headA.Relays, headB.Relays = nil, nil
	changed(lines(headA.Body())[:strings.Count(string(headA.Body()), "\n")], lines(headB.Body())[:strings.Count(string(headB.Body()), "\n")])
	entry := func(e *ConsensusEntry) []string {
		buf := e.appendHead(nil)
		buf = append(appendUint(append(buf, kwW+" "...), e.Bandwidth), '\n')
		l := lines(e.appendTail(buf))
		return l[:len(l)-1]
	}
	i, j := 0, 0
	for i < len(a.Relays) || j < len(b.Relays) {
		switch {
		case j == len(b.Relays) || (i < len(a.Relays) && compareIDs(a.Relays[i].ID, b.Relays[j].ID) < 0):
			n := len(entry(&a.Relays[i]))
			out = fmt.Appendf(out, "%d,%dd\n", lineNo, lineNo+n-1)
			lineNo += n
			i++
		case i == len(a.Relays) || compareIDs(a.Relays[i].ID, b.Relays[j].ID) > 0:
			out = fmt.Appendf(out, "%da\n%s.\n", lineNo-1, strings.Join(entry(&b.Relays[j]), ""))
			j++
		default:
			changed(entry(&a.Relays[i]), entry(&b.Relays[j]))
			i, j = i+1, j+1
		}
	}
	var sigs []byte
	for _, s := range b.Signatures {
		sigs = s.appendLine(sigs)
	}
	out = fmt.Appendf(out, "%d,$c\n%s.\n", lineNo, sigs)
	return out
}
