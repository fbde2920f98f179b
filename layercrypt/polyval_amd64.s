//go:build amd64 && !purego

#include "textflag.h"

// POLYVAL with PCLMULQDQ (see polyval.go for the field and its encoding).
//
// A field element lives in an XMM register exactly as its 16 bytes sit in
// memory: qword 0 holds x^0..x^63, qword 1 holds x^64..x^127. No byte
// swapping is needed, unlike GHASH.
//
// Registers: X0 running sum, X1 input block, X2 key power, X3-X5 scratch,
// X8/X9/X10 the low, high and middle 128-bit parts of the unreduced product
// being accumulated, X11 the reduction constant.

// The reduction constant: x^63 + x^62 + x^57 in both qwords. A carry-less
// product of a qword w with it is w * (P - 1 - x^128) / x^64, i.e. the
// (w<<57 ^ w<<62 ^ w<<63, w>>7 ^ w>>2 ^ w>>1) pair the portable code uses.
DATA polyvalPoly<>+0x00(SB)/8, $0xc200000000000000
DATA polyvalPoly<>+0x08(SB)/8, $0xc200000000000000
GLOBL polyvalPoly<>(SB), (NOPTR+RODATA), $16

// MULACC adds the 256-bit carry-less product X1*X2 into X8 (a0*b0),
// X9 (a1*b1) and X10 (a0*b1 + a1*b0). It clobbers X1, X3, X4, X5.
#define MULACC \
	MOVOU     X1, X3       \
	PCLMULQDQ $0x00, X2, X3 \
	PXOR      X3, X8       \
	MOVOU     X1, X4       \
	PCLMULQDQ $0x11, X2, X4 \
	PXOR      X4, X9       \
	MOVOU     X1, X5       \
	PCLMULQDQ $0x01, X2, X5 \
	PXOR      X5, X10      \
	PCLMULQDQ $0x10, X2, X1 \
	PXOR      X1, X10

// REDUCE sets X0 = (X8 + X10*x^64 + X9*x^128) * x^-128 mod P: Montgomery
// reduction in two folds of 64 bits, each adding w*P for the lowest
// remaining qword w. It clobbers X3, X8, X9, X10.
#define REDUCE \
	MOVOU     X10, X3        \
	PSLLDQ    $8, X3         \
	PSRLDQ    $8, X10        \
	PXOR      X3, X8         \
	PXOR      X10, X9        \
	MOVOU     X8, X3         \
	PCLMULQDQ $0x00, X11, X3 \
	PSHUFD    $0x4e, X8, X8  \
	PXOR      X3, X8         \
	MOVOU     X8, X3         \
	PCLMULQDQ $0x00, X11, X3 \
	PSHUFD    $0x4e, X8, X8  \
	PXOR      X3, X8         \
	PXOR      X9, X8         \
	MOVOU     X8, X0

// func polyvalMulAsm(out, a, b *polyvalElem)
TEXT ·polyvalMulAsm(SB), NOSPLIT, $0-24
	MOVQ  out+0(FP), DI
	MOVQ  a+8(FP), SI
	MOVQ  b+16(FP), DX
	MOVOU polyvalPoly<>(SB), X11
	MOVOU (SI), X1
	MOVOU (DX), X2
	PXOR  X8, X8
	PXOR  X9, X9
	PXOR  X10, X10
	MULACC
	REDUCE
	MOVOU X0, (DI)
	RET

// func polyvalBlocksAsm(acc *polyvalElem, pow *[8]polyvalElem, data *byte, n int)
//
// Blocks are taken in chunks of m = min(8, remaining). For a chunk
// X_1..X_m and running sum S, the new sum is
//   dot(S + X_1, H^m) + dot(X_2, H^(m-1)) + ... + dot(X_m, H^1),
// computed as m unreduced products and one reduction.
TEXT ·polyvalBlocksAsm(SB), NOSPLIT, $0-32
	MOVQ  acc+0(FP), DI
	MOVQ  pow+8(FP), DX
	MOVQ  data+16(FP), SI
	MOVQ  n+24(FP), CX
	MOVOU (DI), X0
	MOVOU polyvalPoly<>(SB), X11

chunk:
	TESTQ CX, CX
	JZ    done
	MOVQ  CX, BX
	CMPQ  BX, $8
	JBE   sized
	MOVQ  $8, BX

sized:
	SUBQ  BX, CX
	MOVQ  BX, R8
	SHLQ  $4, R8
	LEAQ  -16(DX)(R8*1), R8 // R8 = &pow[m-1]
	PXOR  X8, X8
	PXOR  X9, X9
	PXOR  X10, X10
	MOVOU (SI), X1
	PXOR  X0, X1
	JMP   mul

next:
	MOVOU (SI), X1

mul:
	MOVOU (R8), X2
	MULACC
	ADDQ  $16, SI
	SUBQ  $16, R8
	DECQ  BX
	JNZ   next
	REDUCE
	JMP   chunk

done:
	MOVOU X0, (DI)
	RET
