package layercrypt

import (
	"crypto/ecdh"
	"math/big"
	"math/rand/v2"
	"testing"
)

// x25519Impls runs f with each X25519 implementation this machine has: the
// amd64 assembly (where the CPU has BMI2 and ADX) and the portable ladder.
func x25519Impls(t *testing.T, f func(t *testing.T)) {
	t.Helper()
	saved := ntor3X25519UseAsm
	t.Cleanup(func() { ntor3X25519UseAsm = saved })
	if ntor3X25519HaveAsm {
		ntor3X25519UseAsm = true
		t.Run("asm", f)
	}
	ntor3X25519UseAsm = false
	t.Run("generic", f)
	ntor3X25519UseAsm = saved
}

// x25519Both returns X25519(scalar, point) from the assembly (if this
// machine has it; else the portable ladder again) and from the portable
// ladder, with the low-order reports.
func x25519Both(scalar, point *[32]byte) (asm, generic [32]byte, asmOK, genericOK bool) {
	saved := ntor3X25519UseAsm
	ntor3X25519UseAsm = ntor3X25519HaveAsm
	asmOK = ntor3X25519(&asm, scalar, point)
	ntor3X25519UseAsm = saved
	genericOK = ntor3X25519Generic(&generic, scalar, point)
	return
}

// x25519CheckAll checks X25519(scalar, point) from the assembly, the
// portable ladder and crypto/ecdh (an independent implementation) against
// each other: the same 32 bytes, false exactly where crypto/ecdh reports the
// all-zero output, and all zeros then.
func x25519CheckAll(t testing.TB, scalar, point *[32]byte) {
	t.Helper()
	asm, gen, asmOK, genOK := x25519Both(scalar, point)
	if asm != gen || asmOK != genOK {
		t.Fatalf("X25519(%x, %x): assembly %x (ok %v), portable %x (ok %v)",
			scalar[:], point[:], asm, asmOK, gen, genOK)
	}
	priv, err := ecdh.X25519().NewPrivateKey(scalar[:])
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ecdh.X25519().NewPublicKey(point[:])
	if err != nil {
		t.Fatal(err)
	}
	want, err := priv.ECDH(peer)
	if (err == nil) != asmOK {
		t.Fatalf("X25519(%x, %x): ok = %v, crypto/ecdh error = %v", scalar[:], point[:], asmOK, err)
	}
	if err != nil {
		if asm != [32]byte{} {
			t.Fatalf("X25519(%x, %x): low-order result %x is not all zero", scalar[:], point[:], asm)
		}
		return
	}
	if string(asm[:]) != string(want) {
		t.Fatalf("X25519(%x, %x) = %x, crypto/ecdh says %x", scalar[:], point[:], asm, want)
	}
}

// x25519EdgePoints are u-coordinates at the edges of the encoding: 0, 1,
// p-1, the non-canonical p .. 2^255-1 (RFC 7748 requires accepting them,
// reduced modulo p), and each with the ignored top bit set, plus all-ones
// limbs and the low-order points.
func x25519EdgePoints(t testing.TB) [][32]byte {
	p := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 255), big.NewInt(19))
	var out [][32]byte
	add := func(v *big.Int) {
		var b [32]byte
		v.FillBytes(b[:])
		for i := 0; i < 16; i++ {
			b[i], b[31-i] = b[31-i], b[i]
		}
		out = append(out, b)
		b[31] ^= 0x80
		out = append(out, b)
	}
	for _, d := range []int64{0, 1, 2, 9} {
		add(big.NewInt(d))
		add(new(big.Int).Sub(p, big.NewInt(d+1))) // p-1-d
		add(new(big.Int).Add(p, big.NewInt(d)))   // p+d, non-canonical
	}
	for d := int64(10); d <= 18; d++ {
		add(new(big.Int).Add(p, big.NewInt(d))) // up to p+18 = 2^255-1
	}
	add(new(big.Int).Lsh(big.NewInt(1), 254))
	add(new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 254), big.NewInt(1)))
	for _, h := range []string{
		"ffffffffffffffff000000000000000000000000000000000000000000000000",
		"0000000000000000ffffffffffffffff00000000000000000000000000000000",
		"00000000000000000000000000000000ffffffffffffffff0000000000000000",
		"000000000000000000000000000000000000000000000000ffffffffffffff7f",
		"ffffffff00000000ffffffff00000000ffffffff00000000ffffffff00000000",
	} {
		var b [32]byte
		copy(b[:], mustHex(t, h))
		out = append(out, b)
		b[31] ^= 0x80
		out = append(out, b)
	}
	return append(out, ntor3LowOrderPoints(t)...)
}

// x25519EdgeScalars are scalars whose clamped form is extreme, and a
// random one.
func x25519EdgeScalars(rng *rand.Rand) [][32]byte {
	var zero, ones, alt, r [32]byte
	for i := range ones {
		ones[i] = 0xff
		alt[i] = 0x55
	}
	for i := range r {
		r[i] = byte(rng.Uint32())
	}
	return [][32]byte{zero, ones, alt, r}
}

// TestX25519MatchesStdlibAndGeneric checks the assembly against the
// portable ladder and crypto/ecdh on thousands of random scalars and
// points (on the curve and on its twist, top bit random), on random public
// keys, and on every edge point with extreme scalars.
func TestX25519MatchesStdlibAndGeneric(t *testing.T) {
	if !ntor3X25519HaveAsm {
		t.Log("no X25519 assembly on this build/CPU: checking the portable ladder alone")
	}
	rng := rand.New(rand.NewPCG(25519, 7748))
	n := 3000
	if testing.Short() {
		n = 300
	}
	for i := 0; i < n; i++ {
		var s, p [32]byte
		for j := range s {
			s[j], p[j] = byte(rng.Uint32()), byte(rng.Uint32())
		}
		x25519CheckAll(t, &s, &p)
		if i%8 == 0 {
			// A point of the prime-order subgroup's coset, as real public keys are.
			var q [32]byte
			ntor3X25519Base(&q, &p)
			x25519CheckAll(t, &s, &q)
		}
	}
	for _, p := range x25519EdgePoints(t) {
		for _, s := range x25519EdgeScalars(rng) {
			x25519CheckAll(t, &s, &p)
		}
	}
}

// TestX25519Iterated runs the RFC 7748 section 5.2 iteration (k, u =
// X25519(k, u), k) on both implementations side by side, comparing every
// step, to 1,000 iterations.
func TestX25519Iterated(t *testing.T) {
	v := loadNtor3KAT(t, "ntorv3_x25519_rfc7748.txt")
	var k, u [32]byte
	k[0], u[0] = 9, 9
	for i := 1; i <= 1000; i++ {
		asm, gen, _, _ := x25519Both(&k, &u)
		if asm != gen {
			t.Fatalf("iteration %d: assembly %x, portable %x", i, asm, gen)
		}
		u, k = k, asm
		if i == 1 {
			checkBytes(t, "RFC 7748 5.2 iterated x1", k[:], v["iterated1"])
		}
	}
	checkBytes(t, "RFC 7748 5.2 iterated x1000", k[:], v["iterated1000"])
}

// FuzzNtorV3X25519 compares the assembly, the portable ladder and
// crypto/ecdh on arbitrary scalars and points. The seeds in
// testdata/fuzz/FuzzNtorV3X25519 hold the RFC 7748 vector, non-canonical
// and extreme u and a low-order point.
func FuzzNtorV3X25519(f *testing.F) {
	f.Add(make([]byte, 32), make([]byte, 32))
	nine := make([]byte, 32)
	nine[0] = 9
	f.Add(nine, nine)
	for _, p := range x25519EdgePoints(f) {
		f.Add(nine, p[:])
	}
	f.Fuzz(func(t *testing.T, scalar, point []byte) {
		// Inputs of other lengths are cut or zero-padded to 32 bytes, so
		// that every input the fuzzer makes tests something.
		var s, p [32]byte
		copy(s[:], scalar)
		copy(p[:], point)
		x25519CheckAll(t, &s, &p)
	})
}

// x25519BenchImpls runs f as sub-benchmarks "asm" (where the CPU has the
// assembly) and "generic", so that one run compares the two.
func x25519BenchImpls(b *testing.B, f func(b *testing.B)) {
	saved := ntor3X25519UseAsm
	b.Cleanup(func() { ntor3X25519UseAsm = saved })
	for _, useAsm := range []bool{true, false} {
		if useAsm && !ntor3X25519HaveAsm {
			continue
		}
		b.Run(map[bool]string{true: "asm", false: "generic"}[useAsm], func(b *testing.B) {
			ntor3X25519UseAsm = useAsm
			f(b)
		})
	}
}
