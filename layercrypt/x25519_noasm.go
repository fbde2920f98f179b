//go:build !amd64 || purego

package layercrypt

import "filippo.io/edwards25519"

// Without the amd64 assembly X25519 runs the portable ladder. The two
// variables mirror x25519_amd64.go so that the tests build everywhere; here
// they select nothing.
var (
	ntor3X25519HaveAsm = false
	ntor3X25519UseAsm  = false
)

// ntor3X25519 sets out = X25519(scalar, point), the Montgomery ladder of
// RFC 7748 section 5 in constant time. It reports false if out is all zero,
// which happens exactly when point is of low order.
func ntor3X25519(out, scalar, point *[32]byte) bool {
	return ntor3X25519Generic(out, scalar, point)
}

// ntor3BytesMontgomery sets out to the Montgomery u-coordinate of p.
func ntor3BytesMontgomery(out *[32]byte, p *edwards25519.Point) {
	copy(out[:], p.BytesMontgomery())
}
