// Package netdoc holds chive's directory documents: relay descriptors,
// authority votes and the consensus. It defines their types, their
// human-readable line-based encoding, Ed25519 signatures over their exact
// bytes, strict parsing and verification, the flag rules authorities apply
// (AssignFlags) and the deterministic consensus computation
// (ComputeConsensus). It performs no network I/O.
//
// Encoding, in brief (docs/DIRECTORY.md has the full specification):
//
//   - UTF-8 lines ending in "\n": a keyword, then arguments separated by
//     single spaces; no control characters, no empty lines.
//   - The first line names the document and its version:
//     "chive-descriptor 1", "chive-vote 1", "chive-consensus 1".
//   - Keywords come in a fixed order; unknown, duplicate, misplaced and
//     missing keywords are distinct errors (*ParseError with a line number,
//     wrapping a sentinel such as ErrUnknownKeyword).
//   - Every value has exactly one accepted spelling, so that
//     Encode(Parse(b)) == b and signatures over bytes are unambiguous.
//   - Descriptors and votes end with "signature SIG" over every byte before
//     that line; a consensus ends with "authority-signature ID SIG" lines
//     over every byte before the first of them (Consensus.Body). Ed25519
//     signs "chive netdoc signature v1\x00" || SHA-256(signed bytes).
//
// Relays and authorities are sorted by their raw 32 ID bytes everywhere.
package netdoc
