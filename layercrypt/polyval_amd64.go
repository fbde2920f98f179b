//go:build amd64 && !purego

package layercrypt

import "golang.org/x/sys/cpu"

// polyvalHaveAsm reports whether this CPU can run the assembly, which uses
// PCLMULQDQ in its AVX (VEX) encoding.
var polyvalHaveAsm = cpu.X86.HasPCLMULQDQ && cpu.X86.HasAVX

// polyvalUseAsm selects the assembly. Tests clear it to force the portable
// code on any machine.
var polyvalUseAsm = polyvalHaveAsm

// polyvalMulAsm sets *out = dot(*a, *b).
//
//go:noescape
func polyvalMulAsm(out, a, b *polyvalElem)

// polyvalPowersAsm sets pow[1..7] to H^2..H^8 from pow[0] = H.
//
//go:noescape
func polyvalPowersAsm(pow *[polyvalAggBlocks]polyvalElem)

// polyvalPowers2Asm is polyvalPowersAsm for two keys at once.
//
//go:noescape
func polyvalPowers2Asm(p, q *[polyvalAggBlocks]polyvalElem)

// polyvalBlocksAsm absorbs n >= 1 blocks at data into *acc, folding up to
// polyvalAggBlocks blocks per reduction with the powers in *pow.
//
//go:noescape
func polyvalBlocksAsm(acc *polyvalElem, pow *[polyvalAggBlocks]polyvalElem, data *byte, n int)

// polyvalCGOTweakAsm hashes CGO's ET tweak in place (see polyval_amd64.s).
//
//go:noescape
func polyvalCGOTweakAsm(pow *[polyvalAggBlocks]polyvalElem, h *[PolyvalBlockLen]byte,
	body *[CGOBodyLen]byte, out *polyvalElem, ad byte)

// polyvalCGOTweak sets out to POLYVAL(p's key, h || ad || body[16:] || 0 0),
// the hash of CGO's ET tweak. The portable code lays the tweak out in
// scratch first; the assembly reads it from body in place. It does not use
// or change p's running sum.
func polyvalCGOTweak(p *Polyval, out *[PolyvalSumLen]byte, h *[PolyvalBlockLen]byte, ad byte,
	body *[CGOBodyLen]byte, scratch *[polyvalCGOTweakLen]byte) {
	if polyvalUseAsm {
		var s polyvalElem
		polyvalCGOTweakAsm(&p.pow, h, body, &s, ad)
		polyvalStore(out[:], s)
		return
	}
	polyvalCGOTweakGeneric(p, out, h, ad, body, scratch)
}

// polyvalBlocks absorbs len(blocks)/16 blocks (len > 0, a multiple of 16).
func polyvalBlocks(p *Polyval, blocks []byte) {
	if polyvalUseAsm {
		polyvalBlocksAsm(&p.acc, &p.pow, &blocks[0], len(blocks)/PolyvalBlockLen)
		return
	}
	polyvalBlocksGeneric(p, blocks)
}

// polyvalPowers sets p.pow[1..7] from p.pow[0].
func polyvalPowers(p *Polyval) {
	if polyvalUseAsm {
		polyvalPowersAsm(&p.pow)
		return
	}
	polyvalPowersGeneric(p)
}

// polyvalInitPair is p.Init(kp) and q.Init(kq) in one pass.
func polyvalInitPair(p, q *Polyval, kp, kq *[PolyvalKeyLen]byte) {
	if !polyvalUseAsm {
		p.Init(kp)
		q.Init(kq)
		return
	}
	p.pow[0] = polyvalLoad(kp[:])
	q.pow[0] = polyvalLoad(kq[:])
	polyvalPowers2Asm(&p.pow, &q.pow)
	p.acc, q.acc = polyvalElem{}, polyvalElem{}
}

// polyvalMul returns dot(a, b).
func polyvalMul(a, b polyvalElem) polyvalElem {
	if polyvalUseAsm {
		var out polyvalElem
		polyvalMulAsm(&out, &a, &b)
		return out
	}
	return polyvalMulGeneric(a, b)
}
