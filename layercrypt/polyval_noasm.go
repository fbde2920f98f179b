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

// polyvalMul returns dot(a, b).
func polyvalMul(a, b polyvalElem) polyvalElem { return polyvalMulGeneric(a, b) }
