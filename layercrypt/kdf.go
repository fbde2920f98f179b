package layercrypt

// The symmetric building blocks of ntor-v3, as Tor proposal 332 appendix A.1
// instantiates them (t is a tweak string, k a key):
//
//	ENCAP(s)        = htonll(len(s)) | s
//	H(s, t)         = SHA3-256(ENCAP(t) | s)
//	MAC(k, msg, t)  = SHA3-256(ENCAP(t) | ENCAP(k) | msg)
//	KDF(s, t)       = SHAKE-256(ENCAP(t) | s)
//	ENC(k, m)       = AES-256-CTR(k, m), with an all-zero initial counter
//
// The tweaks are PROTOID followed by ":kdf_phase1", ":msg_mac", ":key_seed",
// ":verify", ":kdf_final" and ":auth_final". Each is kept here already
// encapsulated, since it is only ever absorbed as ENCAP(t).

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/sha3"
	"encoding/binary"
)

const (
	ntor3DigestLen = 32 // DIGEST_LEN: SHA3-256 output, also MAC_LEN
	ntor3MACLen    = ntor3DigestLen
	ntor3EncKeyLen = 32 // ENC_KEY_LEN: AES-256
	ntor3MACKeyLen = 32 // MAC_KEY_LEN
	ntor3EncapLen  = 8  // the htonll length prefix of ENCAP
)

var (
	ntor3Protoid       = []byte(NtorV3Protoid)
	ntor3TweakMsgKDF   = ntor3Encap(NtorV3Protoid + ":kdf_phase1")
	ntor3TweakMsgMAC   = ntor3Encap(NtorV3Protoid + ":msg_mac")
	ntor3TweakKeySeed  = ntor3Encap(NtorV3Protoid + ":key_seed")
	ntor3TweakVerify   = ntor3Encap(NtorV3Protoid + ":verify")
	ntor3TweakFinal    = ntor3Encap(NtorV3Protoid + ":kdf_final")
	ntor3TweakAuth     = ntor3Encap(NtorV3Protoid + ":auth_final")
	ntor3ServerLiteral = []byte("Server")
)

// ntor3Encap returns ENCAP(s).
func ntor3Encap(s string) []byte {
	b := ntor3EncapPrefix(len(s))
	return append(b[:], s...)
}

// ntor3EncapPrefix returns the length prefix of ENCAP for an n-byte string.
func ntor3EncapPrefix(n int) [ntor3EncapLen]byte {
	var b [ntor3EncapLen]byte
	binary.BigEndian.PutUint64(b[:], uint64(n))
	return b
}

// ntor3Hash is SHA3-256 with a tweak already absorbed: H(·, t) or, once the
// key is written with writeEncap, MAC(k, ·, t). It is a value type so that it
// can live on the stack; sum wipes its state.
type ntor3Hash struct {
	h sha3.SHA3 // the zero value is SHA3-256
}

func (h *ntor3Hash) init(encapTweak []byte) { h.h.Write(encapTweak) }

func (h *ntor3Hash) write(b []byte) { h.h.Write(b) }

// writeEncap absorbs ENCAP(b).
func (h *ntor3Hash) writeEncap(b []byte) {
	p := ntor3EncapPrefix(len(b))
	h.h.Write(p[:])
	h.h.Write(b)
}

// sum writes the digest to out and zeroes the hash state, which may have
// absorbed secrets.
func (h *ntor3Hash) sum(out *[ntor3DigestLen]byte) {
	h.h.Sum(out[:0])
	h.h.Reset()
}

// ntor3Crypt is ENC and DEC: AES-256-CTR under key from an all-zero counter
// block, XORed from src into dst (which may be src). The protocol never uses
// a key twice, so the fixed counter is safe.
func ntor3Crypt(key *[ntor3EncKeyLen]byte, dst, src []byte) {
	block, err := aes.NewCipher(key[:])
	if err != nil {
		// Unreachable: the key is an array of a valid AES key size.
		panic("layercrypt: ntor-v3 AES key: " + err.Error())
	}
	var iv [aes.BlockSize]byte
	cipher.NewCTR(block, iv[:]).XORKeyStream(dst, src)
}
