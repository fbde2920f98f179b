package netdoc

import (
	"crypto/sha256"

	"github.com/chive-net/chive/layercrypt"
)

// sigContext is prepended to what every chive document signature signs, so
// that a signature over a document can never be mistaken for one made by
// the same key in another protocol (the TLS certificate binding, say).
const sigContext = "chive netdoc signature v1\x00"

// sigMessage is the message Ed25519 signs for a document whose signed
// bytes are signed: sigContext || SHA-256(signed). Hashing first keeps
// verifying a multi-megabyte consensus cheap for each signature (Ed25519
// would otherwise hash the whole body once per signature), and the digest
// is the same one that names the document.
func sigMessage(signed []byte) []byte {
	h := sha256.Sum256(signed)
	m := make([]byte, 0, len(sigContext)+len(h))
	m = append(m, sigContext...)
	return append(m, h[:]...)
}

func sigMessageFromDigest(d Digest) []byte {
	m := make([]byte, 0, len(sigContext)+len(d))
	m = append(m, sigContext...)
	return append(m, d[:]...)
}

func signBytes(k *layercrypt.IdentityKey, signed []byte) [layercrypt.SignatureLen]byte {
	var sig [layercrypt.SignatureLen]byte
	copy(sig[:], k.Sign(sigMessage(signed)))
	return sig
}

func verifyBytes(id layercrypt.RelayID, signed []byte, sig [layercrypt.SignatureLen]byte) bool {
	return layercrypt.Verify(id, sigMessage(signed), sig[:])
}

// appendSignatureLine writes "signature SIG\n".
func appendSignatureLine(b []byte, sig [layercrypt.SignatureLen]byte) []byte {
	b = append(b, kwSignature+" "...)
	b = b64.AppendEncode(b, sig[:])
	return append(b, '\n')
}

const kwSignature = "signature"
