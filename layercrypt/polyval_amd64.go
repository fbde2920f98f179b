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

// polyvalBlocksAsm absorbs n >= 1 blocks at data into *acc, folding up to
// polyvalAggBlocks blocks per reduction with the powers in *pow.
//
//go:noescape
func polyvalBlocksAsm(acc *polyvalElem, pow *[polyvalAggBlocks]polyvalElem, data *byte, n int)

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

// polyvalMul returns dot(a, b).
func polyvalMul(a, b polyvalElem) polyvalElem {
	if polyvalUseAsm {
		var out polyvalElem
		polyvalMulAsm(&out, &a, &b)
		return out
	}
	return polyvalMulGeneric(a, b)
}
