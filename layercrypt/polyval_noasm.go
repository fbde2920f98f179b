//go:build !amd64 || purego

package layercrypt

// Without the amd64 assembly every POLYVAL operation runs the portable code.
// The two variables mirror polyval_amd64.go so that the tests build
// everywhere; here they select nothing.
var (
	polyvalHaveAsm = false
	polyvalUseAsm  = false
)

// polyvalBlocks absorbs len(blocks)/16 blocks (len > 0, a multiple of 16).
func polyvalBlocks(p *Polyval, blocks []byte) { polyvalBlocksGeneric(p, blocks) }

// polyvalPowers sets p.pow[1..7] from p.pow[0].
func polyvalPowers(p *Polyval) { polyvalPowersGeneric(p) }

// polyvalInitPair is p.Init(kp) and q.Init(kq).
func polyvalInitPair(p, q *Polyval, kp, kq *[PolyvalKeyLen]byte) {
	p.Init(kp)
	q.Init(kq)
}

// polyvalCGOTweak sets out to POLYVAL(p's key, h || ad || body[16:] || 0 0),
// the hash of CGO's ET tweak, laying the tweak out in scratch. It does not
// use or change p's running sum.
func polyvalCGOTweak(p *Polyval, out *[PolyvalSumLen]byte, h *[PolyvalBlockLen]byte, ad byte,
	body *[CGOBodyLen]byte, scratch *[polyvalCGOTweakLen]byte) {
	polyvalCGOTweakGeneric(p, out, h, ad, body, scratch)
}

// polyvalMul returns dot(a, b).
func polyvalMul(a, b polyvalElem) polyvalElem { return polyvalMulGeneric(a, b) }
