package layercrypt

import (
	"bufio"
	"bytes"
	"encoding/hex"
	"fmt"
	"math/big"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
)

// polyvalVector is one record of testdata/polyval_rfc8452.txt.
type polyvalVector struct {
	name   string
	key    [PolyvalKeyLen]byte
	input  []byte
	result [PolyvalSumLen]byte
}

func polyvalUnhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatalf("bad hex %q: %v", s, err)
	}
	return b
}

func loadPolyvalVectors(t *testing.T) []polyvalVector {
	t.Helper()
	f, err := os.Open("testdata/polyval_rfc8452.txt")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var (
		out  []polyvalVector
		cur  polyvalVector
		have struct{ key, result bool }
	)
	finish := func(line int) {
		if !have.key || !have.result || len(cur.input) == 0 {
			t.Fatalf("line %d: incomplete record %q", line, cur.name)
		}
		out = append(out, cur)
		cur = polyvalVector{}
		have.key, have.result = false, false
	}
	sc := bufio.NewScanner(f)
	line := 0
	for sc.Scan() {
		line++
		text := strings.TrimSpace(sc.Text())
		switch {
		case text == "":
		case text == "--":
			finish(line)
		case strings.HasPrefix(text, "#"):
			cur.name = strings.TrimSpace(strings.TrimPrefix(text, "#"))
		default:
			field, value, ok := strings.Cut(text, " ")
			if !ok {
				t.Fatalf("line %d: no value: %q", line, text)
			}
			b := polyvalUnhex(t, strings.TrimSpace(value))
			if len(b) != 16 {
				t.Fatalf("line %d: %d bytes, want 16", line, len(b))
			}
			switch field {
			case "key":
				copy(cur.key[:], b)
				have.key = true
			case "input":
				cur.input = append(cur.input, b...)
			case "result":
				copy(cur.result[:], b)
				have.result = true
			default:
				t.Fatalf("line %d: unknown field %q", line, field)
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	finish(line)
	return out
}

// polyvalRef is a deliberately naive POLYVAL straight from the RFC 8452
// definition, with math/big polynomials: multiply, reduce mod P by long
// division, then divide by x 128 times modulo P. It shares no code with the
// implementations under test.
func polyvalRef(key, data []byte) [16]byte {
	toPoly := func(b []byte) *big.Int {
		r := make([]byte, len(b))
		for i := range b {
			r[len(b)-1-i] = b[i]
		}
		return new(big.Int).SetBytes(r)
	}
	p := new(big.Int).SetBit(new(big.Int), 128, 1)
	for _, e := range []int{127, 126, 121, 0} {
		p.SetBit(p, e, 1)
	}
	dot := func(a, b *big.Int) *big.Int {
		prod := new(big.Int)
		for i := 0; i < b.BitLen(); i++ {
			if b.Bit(i) == 1 {
				prod.Xor(prod, new(big.Int).Lsh(a, uint(i)))
			}
		}
		for d := prod.BitLen() - 1; d >= 128; d-- {
			if prod.Bit(d) == 1 {
				prod.Xor(prod, new(big.Int).Lsh(p, uint(d-128)))
			}
		}
		for range 128 {
			if prod.Bit(0) == 1 {
				prod.Xor(prod, p)
			}
			prod.Rsh(prod, 1)
		}
		return prod
	}
	h := toPoly(key)
	s := new(big.Int)
	for off := 0; off < len(data); off += 16 {
		s = dot(new(big.Int).Xor(s, toPoly(data[off:off+16])), h)
	}
	var out [16]byte
	be := s.FillBytes(make([]byte, 16))
	for i := range be {
		out[15-i] = be[i]
	}
	return out
}

// polyvalImpls runs f once with the assembly (where this CPU has it) and
// once with the portable code forced.
func polyvalImpls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := polyvalUseAsm
	t.Cleanup(func() { polyvalUseAsm = saved })
	if polyvalHaveAsm {
		polyvalUseAsm = true
		t.Run("asm", f)
	} else {
		t.Log("no PCLMULQDQ assembly on this build/CPU; testing the portable code only")
	}
	polyvalUseAsm = false
	t.Run("generic", f)
	polyvalUseAsm = saved
}

func polyvalOneShot(key *[16]byte, data []byte) [16]byte {
	var p Polyval
	p.Init(key)
	p.Update(data)
	var out [16]byte
	p.Sum(&out)
	return out
}

func TestPolyvalRFC8452(t *testing.T) {
	vecs := loadPolyvalVectors(t)
	if len(vecs) != 51 {
		t.Fatalf("loaded %d vectors, want 51 (Appendix A + 50 of Appendix C)", len(vecs))
	}
	polyvalImpls(t, func(t *testing.T) {
		for _, v := range vecs {
			if got := polyvalOneShot(&v.key, v.input); got != v.result {
				t.Errorf("%s: got %x, want %x", v.name, got, v.result)
			}
			// Block by block must give the same result.
			var p Polyval
			p.Init(&v.key)
			for off := 0; off < len(v.input); off += 16 {
				p.Update(v.input[off : off+16])
			}
			var got [16]byte
			p.Sum(&got)
			if got != v.result {
				t.Errorf("%s, one block at a time: got %x, want %x", v.name, got, v.result)
			}
		}
	})
}

func TestPolyvalReferenceAgreesWithRFC(t *testing.T) {
	// The naive reference used by the random tests is itself checked
	// against the RFC before it is trusted.
	for _, v := range loadPolyvalVectors(t) {
		if got := polyvalRef(v.key[:], v.input); got != v.result {
			t.Errorf("%s: reference got %x, want %x", v.name, got, v.result)
		}
	}
}

func TestPolyvalRandomAgainstReference(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	polyvalImpls(t, func(t *testing.T) {
		for i := 0; i < 200; i++ {
			var key [16]byte
			fillRand(rng, key[:])
			data := make([]byte, 16*(1+rng.IntN(40)))
			fillRand(rng, data)
			want := polyvalRef(key[:], data)
			if got := polyvalOneShot(&key, data); got != want {
				t.Fatalf("case %d (%d blocks): got %x, want %x", i, len(data)/16, got, want)
			}
		}
	})
}

// TestPolyvalAsmMatchesGeneric feeds both implementations the same random
// keys and inputs, split into random pieces, including all chunk sizes
// around the eight-block aggregation.
func TestPolyvalAsmMatchesGeneric(t *testing.T) {
	if !polyvalHaveAsm {
		t.Skip("no PCLMULQDQ assembly on this build/CPU")
	}
	saved := polyvalUseAsm
	t.Cleanup(func() { polyvalUseAsm = saved })
	rng := rand.New(rand.NewPCG(3, 4))
	for i := 0; i < 3000; i++ {
		var key [16]byte
		fillRand(rng, key[:])
		if i%10 == 0 {
			// Sparse keys and data stress the reduction edges.
			clear(key[:])
			key[rng.IntN(16)] = byte(1) << rng.IntN(8)
		}
		n := 1 + rng.IntN(70)
		data := make([]byte, n*16)
		fillRand(rng, data)
		if i%7 == 0 {
			for j := range data {
				data[j] = 0xff
			}
		}
		var outs [2][16]byte
		for k, useAsm := range []bool{true, false} {
			polyvalUseAsm = useAsm
			var p Polyval
			p.Init(&key)
			rest := data
			for len(rest) > 0 {
				take := 16 * (1 + rng.IntN(len(rest)/16))
				p.Update(rest[:take])
				rest = rest[take:]
			}
			p.Sum(&outs[k])
		}
		if outs[0] != outs[1] {
			t.Fatalf("case %d (%d blocks): asm %x, generic %x", i, n, outs[0], outs[1])
		}
		// The key powers must agree too, also when two keys are set
		// up together.
		var pa, pg, qa, qg Polyval
		var key2 [16]byte
		fillRand(rng, key2[:])
		polyvalUseAsm = true
		pa.Init(&key)
		polyvalUseAsm = false
		pg.Init(&key)
		qg.Init(&key2)
		if pa.pow != pg.pow {
			t.Fatalf("case %d: key powers differ", i)
		}
		polyvalUseAsm = true
		polyvalInitPair(&pa, &qa, &key, &key2)
		if pa.pow != pg.pow || qa.pow != qg.pow || pa.acc != (polyvalElem{}) || qa.acc != (polyvalElem{}) {
			t.Fatalf("case %d: key powers from polyvalInitPair differ", i)
		}
	}
}

// TestPolyvalMulMatchesGeneric checks single products (the assembly's
// polyvalMulAsm) against the portable code, including all-ones and
// single-bit operands.
func TestPolyvalMulMatchesGeneric(t *testing.T) {
	saved := polyvalUseAsm
	t.Cleanup(func() { polyvalUseAsm = saved })
	rng := rand.New(rand.NewPCG(9, 10))
	elems := []polyvalElem{{}, {lo: 1}, {hi: 1 << 63}, {lo: ^uint64(0), hi: ^uint64(0)}}
	for i := 0; i < 2000; i++ {
		elems = append(elems, polyvalElem{lo: rng.Uint64(), hi: rng.Uint64()})
	}
	for i := 0; i+1 < len(elems); i++ {
		a, b := elems[i], elems[len(elems)-1-i]
		want := polyvalMulGeneric(a, b)
		polyvalUseAsm = polyvalHaveAsm
		if got := polyvalMul(a, b); got != want {
			t.Fatalf("dot(%x, %x) = %x, want %x", a, b, got, want)
		}
		// dot(a, b) == dot(b, a)
		if got := polyvalMulGeneric(b, a); got != want {
			t.Fatalf("generic dot is not commutative for %x, %x", a, b)
		}
	}
}

// TestPolyvalCGOTweak checks the in-place hash of CGO's ET tweak against
// POLYVAL of the tweak written out in full, on both implementations, and
// that the body is left alone.
func TestPolyvalCGOTweak(t *testing.T) {
	rng := rand.New(rand.NewPCG(17, 18))
	polyvalImpls(t, func(t *testing.T) {
		for i := 0; i < 300; i++ {
			var key, h [16]byte
			var body [CGOBodyLen]byte
			fillRand(rng, key[:])
			fillRand(rng, h[:])
			fillRand(rng, body[:])
			ad := byte(rng.Uint32())
			tweak := append(append(append([]byte{}, h[:]...), ad), body[CGOTagLen:]...)
			tweak = append(tweak, 0, 0)
			want := polyvalRef(key[:], tweak)

			var p Polyval
			p.Init(&key)
			p.Update(make([]byte, 32)) // a running sum it must neither use nor change
			var before, got [16]byte
			p.Sum(&before)
			orig := body
			var scratch [polyvalCGOTweakLen]byte
			polyvalCGOTweak(&p, &got, &h, ad, &body, &scratch)
			if got != want {
				t.Fatalf("case %d: got %x, want %x", i, got, want)
			}
			if body != orig {
				t.Fatalf("case %d: body changed", i)
			}
			var after [16]byte
			p.Sum(&after)
			if after != before {
				t.Fatalf("case %d: running sum changed", i)
			}
		}
	})
}

func TestPolyvalUpdatePadded(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	polyvalImpls(t, func(t *testing.T) {
		for n := 0; n <= 70; n++ {
			var key [16]byte
			fillRand(rng, key[:])
			data := make([]byte, n)
			fillRand(rng, data)
			padded := make([]byte, (n+15)&^15)
			copy(padded, data)
			var p Polyval
			p.Init(&key)
			p.UpdatePadded(data)
			var got [16]byte
			p.Sum(&got)
			want := [16]byte{}
			if len(padded) > 0 {
				want = polyvalRef(key[:], padded)
			}
			if got != want {
				t.Fatalf("len %d: got %x, want %x", n, got, want)
			}
		}
	})
}

func TestPolyvalResetAndWipe(t *testing.T) {
	key := [16]byte{1, 2, 3}
	data := bytes.Repeat([]byte{0x5a}, 48)
	var p Polyval
	p.Init(&key)
	p.Update(data)
	var first, second [16]byte
	p.Sum(&first)
	p.Reset()
	p.Update(data)
	p.Sum(&second)
	if first != second {
		t.Fatalf("after Reset: got %x, want %x", second, first)
	}
	if first == ([16]byte{}) {
		t.Fatal("POLYVAL of non-zero data under a non-zero key was zero")
	}
	p.Wipe()
	if p != (Polyval{}) {
		t.Fatal("Wipe left key or state material")
	}
}

func TestPolyvalUpdateRejectsPartialBlock(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("Update accepted 15 bytes")
		}
	}()
	var p Polyval
	p.Update(make([]byte, 15))
}

func fillRand(rng *rand.Rand, b []byte) {
	for i := range b {
		b[i] = byte(rng.Uint32())
	}
}

// FuzzPolyval checks the assembly and the portable code against each other
// (and, for short inputs, against the naive reference).
func FuzzPolyval(f *testing.F) {
	f.Add(make([]byte, 16), make([]byte, 16))
	f.Add(polyvalUnhex(f, "25629347589242761d31f826ba4b757b"),
		polyvalUnhex(f, "4f4f95668c83dfb6401762bb2d01a262d1a24ddd2721d006bbe45f20d3c9f362"))
	f.Add(bytes.Repeat([]byte{0xff}, 16), bytes.Repeat([]byte{0xff}, 16*9))
	f.Fuzz(func(t *testing.T, keyb, data []byte) {
		if len(keyb) != 16 {
			return
		}
		var key [16]byte
		copy(key[:], keyb)
		saved := polyvalUseAsm
		defer func() { polyvalUseAsm = saved }()

		polyvalUseAsm = false
		var g Polyval
		g.Init(&key)
		g.UpdatePadded(data)
		var gen [16]byte
		g.Sum(&gen)

		if polyvalHaveAsm {
			polyvalUseAsm = true
			var a Polyval
			a.Init(&key)
			a.UpdatePadded(data)
			var asm [16]byte
			a.Sum(&asm)
			if asm != gen {
				t.Fatalf("asm %x, generic %x", asm, gen)
			}
		}
		if len(data) > 0 && len(data) <= 64 {
			padded := make([]byte, (len(data)+15)&^15)
			copy(padded, data)
			if ref := polyvalRef(key[:], padded); ref != gen {
				t.Fatalf("generic %x, reference %x", gen, ref)
			}
		}
	})
}

func benchmarkPolyval(b *testing.B, size int, useAsm bool) {
	if useAsm && !polyvalHaveAsm {
		b.Skip("no PCLMULQDQ assembly on this build/CPU")
	}
	saved := polyvalUseAsm
	polyvalUseAsm = useAsm
	b.Cleanup(func() { polyvalUseAsm = saved })
	var key [16]byte
	fillRand(rand.New(rand.NewPCG(7, 8)), key[:])
	data := make([]byte, size)
	var p Polyval
	p.Init(&key)
	var out [16]byte
	b.ReportAllocs()
	b.SetBytes(int64(size))
	b.ResetTimer()
	m := newCGOCPUMeter(b)
	for range b.N {
		p.Reset()
		p.Update(data)
		p.Sum(&out)
	}
	m.report()
}

func BenchmarkPOLYVAL(b *testing.B) {
	for _, size := range []int{16, 512, 8192} {
		b.Run(fmt.Sprintf("asm/%d", size), func(b *testing.B) { benchmarkPolyval(b, size, true) })
		b.Run(fmt.Sprintf("generic/%d", size), func(b *testing.B) { benchmarkPolyval(b, size, false) })
	}
}

func BenchmarkPOLYVALInit(b *testing.B) {
	var key [16]byte
	key[0] = 1
	var p Polyval
	b.ReportAllocs()
	for range b.N {
		p.Init(&key)
	}
}
