package dnsproxy

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/miekg/dns"
)

// FuzzQuery: raw query -> parse (the Resolver's parseQuery) -> check ->
// cache key -> normalised query -> pack -> parse: the normalised query
// always packs, stays within MaxQuerySize, passes the check, and has the
// same key (normalising is idempotent). Rejected queries always get a
// packable error reply.
func FuzzQuery(f *testing.F) {
	for _, s := range querySeeds() {
		f.Add(s.data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		req, err := parseQuery(data)
		if err != nil {
			return
		}
		if rcode, _ := checkQuery(req); rcode != dns.RcodeSuccess {
			b, err := errorReply(req, rcode).Pack()
			if err != nil {
				t.Fatalf("error reply %s does not pack: %v", dns.RcodeToString[rcode], err)
			}
			var r dns.Msg
			if err := r.Unpack(b); err != nil || r.Rcode != rcode || r.Id != req.Id || !r.Response {
				t.Fatalf("error reply: %v (%v), want rcode %d id %d", &r, err, rcode, req.Id)
			}
			return
		}
		k := keyOf(req)
		b, err := forwardQuery(k, 0).Pack()
		if err != nil {
			t.Fatalf("normalised query for %v does not pack: %v", k, err)
		}
		if len(b) > MaxQuerySize {
			t.Fatalf("normalised query is %d bytes", len(b))
		}
		q2, err := parseQuery(b)
		if err != nil {
			t.Fatalf("normalised query does not parse: %v", err)
		}
		if rcode, reason := checkQuery(q2); rcode != dns.RcodeSuccess {
			t.Fatalf("normalised query fails the check: %s %s", dns.RcodeToString[rcode], reason)
		}
		if k2 := keyOf(q2); k2 != k {
			t.Fatalf("key: got %v after a round trip, want %v", k2, k)
		}
		b2, _ := forwardQuery(keyOf(q2), 0).Pack()
		if !bytes.Equal(b, b2) {
			t.Fatalf("normalising twice differs:\n%x\n%x", b, b2)
		}
	})
}

// FuzzAnswer: raw answer -> checkAnswer against the query for its own
// question -> cache TTL -> reply to stubs with and without EDNS0 ->
// truncate -> pack -> parse. The cached answer is never modified, TTLs only
// go down, the cache TTL stays within maxCacheTTL, and a packed UDP reply
// fits the stub's size.
func FuzzAnswer(f *testing.F) {
	for _, s := range answerSeeds() {
		f.Add(s.data, uint32(0))
	}
	f.Fuzz(func(t *testing.T, data []byte, age uint32) {
		var parsed dns.Msg
		if err := parsed.Unpack(data); err != nil || len(parsed.Question) != 1 {
			return
		}
		q0 := parsed.Question[0]
		k := queryKey{name: dns.CanonicalName(q0.Name), qtype: q0.Qtype, qclass: q0.Qclass, cd: parsed.CheckingDisabled}
		if opt := parsed.IsEdns0(); opt != nil {
			k.do = opt.Do()
		}
		q := forwardQuery(k, parsed.Id)
		a, err := checkAnswer(q, data)
		if err != nil {
			return
		}
		ttl := cacheTTL(a)
		if ttl < 0 || ttl > maxCacheTTL {
			t.Fatalf("cache TTL %v", ttl)
		}
		before := a.String()
		for _, edns := range []bool{false, true} {
			req := new(dns.Msg)
			req.Id = 0xbeef
			req.RecursionDesired = true
			req.Question = []dns.Question{q0}
			if edns {
				req.SetEdns0(4096, k.do)
			}
			r := makeReply(req, a, age)
			if r.Id != req.Id || r.Question[0] != q0 || r.Rcode > 0xF && !edns {
				t.Fatalf("reply header: %v", r)
			}
			checkTTLs(t, a.Answer, r.Answer)
			checkTTLs(t, a.Ns, r.Ns)
			size := udpReplySize(req)
			r.Truncate(size)
			b, err := r.Pack()
			if err != nil {
				continue // the server then answers SERVFAIL
			}
			if len(b) > size {
				t.Fatalf("truncated reply is %d bytes, limit %d", len(b), size)
			}
			var back dns.Msg
			if err := back.Unpack(b); err != nil {
				t.Fatalf("reply does not parse: %v", err)
			}
			if (back.IsEdns0() != nil) != edns {
				t.Fatalf("OPT in reply %v, stub EDNS0 %v", back.IsEdns0() != nil, edns)
			}
		}
		if after := a.String(); after != before {
			t.Fatalf("makeReply modified the answer:\n%s\n%s", before, after)
		}
	})
}

func checkTTLs(t *testing.T, orig, got []dns.RR) {
	t.Helper()
	var want []dns.RR
	for _, rr := range orig {
		if rr.Header().Rrtype != dns.TypeOPT && rr.Header().Rrtype != dns.TypeTSIG {
			want = append(want, rr)
		}
	}
	if len(got) != len(want) {
		t.Fatalf("records: got %d, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Header().Ttl > want[i].Header().Ttl {
			t.Fatalf("TTL went up: %d > %d", got[i].Header().Ttl, want[i].Header().Ttl)
		}
	}
}

type seed struct {
	name string
	data []byte
}

func packSeed(name string, m *dns.Msg) seed {
	b, err := m.Pack()
	if err != nil {
		panic(fmt.Sprintf("seed %s: %v", name, err))
	}
	return seed{name, b}
}

func querySeeds() []seed {
	edns := question("www.chive.test.", dns.TypeAAAA)
	edns.SetEdns0(4096, true)
	edns.IsEdns0().Option = append(edns.IsEdns0().Option,
		&dns.EDNS0_SUBNET{Code: dns.EDNS0SUBNET, Family: 1, SourceNetmask: 24, Address: net.IPv4(198, 51, 100, 0).To4()},
		&dns.EDNS0_COOKIE{Code: dns.EDNS0COOKIE, Cookie: "0102030405060708"},
		&dns.EDNS0_PADDING{Padding: make([]byte, 40)})
	two := question("a.chive.test.", dns.TypeA)
	two.Question = append(two.Question, dns.Question{Name: "b.", Qtype: dns.TypeMX, Qclass: dns.ClassINET})
	resp := question("www.chive.test.", dns.TypeA)
	resp.Response = true
	badvers := question("www.chive.test.", dns.TypeA)
	badvers.SetEdns0(1232, false)
	badvers.IsEdns0().SetVersion(3)
	escaped := question(`we\.ird\032name.chive.test.`, dns.TypeTXT)
	cd := question("WWW.CHIVE.TEST.", dns.TypeHTTPS)
	cd.CheckingDisabled = true
	return []seed{
		packSeed("a", question("www.chive.test.", dns.TypeA)),
		packSeed("edns-options", edns),
		packSeed("axfr", question("chive.test.", dns.TypeAXFR)),
		packSeed("two-questions", two),
		packSeed("response", resp),
		packSeed("badvers", badvers),
		packSeed("escaped-name", escaped),
		packSeed("cd-https-upper", cd),
		packSeed("root-ns", question(".", dns.TypeNS)),
		{"header-only", []byte{0xab, 0xcd, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0}},
		{"garbage", []byte("\x12\x34\x01\x00\x00\x01\x00\x00\x00\x00\x00\x00\xc0\x0c\x00\x01\x00\x01")},
	}
}

func answerSeeds() []seed {
	auth := &authority{records: make(map[string][]dns.RR)}
	zp := dns.NewZoneParser(bytes.NewReader([]byte(testZone)), "", "")
	for rr, ok := zp.Next(); ok; rr, ok = zp.Next() {
		auth.add(rr)
	}
	for i, s := range bigTXT(20, 200) {
		auth.add(&dns.TXT{Hdr: hdr("big.chive.test.", dns.TypeTXT, 300), Txt: []string{string(rune('A'+i)) + s}})
	}
	ask := func(name string, qtype uint16, edns bool) *dns.Msg {
		q := forwardQuery(queryKey{name: name, qtype: qtype, qclass: dns.ClassINET, do: edns}, 0x5eed)
		if !edns {
			q.Extra = nil
		}
		return auth.answer(q)
	}
	truncated := ask("big.chive.test.", dns.TypeTXT, false)
	truncated.Truncate(512)
	cookie := ask("www.chive.test.", dns.TypeA, true)
	cookie.Rcode = dns.RcodeBadCookie
	return []seed{
		packSeed("a", ask("www.chive.test.", dns.TypeA, true)),
		packSeed("https", ask("www.chive.test.", dns.TypeHTTPS, false)),
		packSeed("srv", ask("_xmpp._tcp.chive.test.", dns.TypeSRV, true)),
		packSeed("cname", ask("alias.chive.test.", dns.TypeA, false)),
		packSeed("nxdomain", ask("nope.chive.test.", dns.TypeA, true)),
		packSeed("nodata", ask("www.chive.test.", dns.TypeMX, false)),
		packSeed("big-txt", ask("big.chive.test.", dns.TypeTXT, true)),
		packSeed("truncated", truncated),
		packSeed("badcookie", cookie),
	}
}

// TestWriteFuzzSeeds writes the seeds above into testdata/fuzz when
// DNSPROXY_WRITE_FUZZ_SEEDS=1; the files are committed.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("DNSPROXY_WRITE_FUZZ_SEEDS") != "1" {
		t.Skip("set DNSPROXY_WRITE_FUZZ_SEEDS=1 to rewrite testdata/fuzz seeds")
	}
	write := func(target string, seeds []seed, extra string) {
		dir := filepath.Join("testdata", "fuzz", target)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, s := range seeds {
			body := "go test fuzz v1\n[]byte(" + strconv.Quote(string(s.data)) + ")\n" + extra
			if err := os.WriteFile(filepath.Join(dir, "seed-"+s.name), []byte(body), 0o644); err != nil {
				t.Fatal(err)
			}
		}
	}
	write("FuzzQuery", querySeeds(), "")
	write("FuzzAnswer", answerSeeds(), "uint32(100)\n")
}
