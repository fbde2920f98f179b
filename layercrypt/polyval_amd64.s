//go:build amd64 && !purego

#include "textflag.h"

// POLYVAL with PCLMULQDQ, VEX-encoded (AVX) so that products need no
// register copies. See polyval.go for the field and its encoding.
//
// A field element lives in an XMM register exactly as its 16 bytes sit in
// memory: qword 0 holds x^0..x^63, qword 1 holds x^64..x^127. No byte
// swapping is needed, unlike GHASH.
//
// Registers: X0 running sum, X1 input block, X2 key power, X3 scratch,
// X8/X9/X10 the low, high and middle 128-bit parts of the unreduced sum of
// products being accumulated, X11 the reduction constant.

// The reduction constant: x^63 + x^62 + x^57 in both qwords. A carry-less
// product of a qword w with it is w * (P - 1 - x^128) / x^64, i.e. the
// (w<<57 ^ w<<62 ^ w<<63, w>>7 ^ w>>2 ^ w>>1) pair the portable code uses.
DATA polyvalPoly<>+0x00(SB)/8, $0xc200000000000000
DATA polyvalPoly<>+0x08(SB)/8, $0xc200000000000000
GLOBL polyvalPoly<>(SB), (NOPTR+RODATA), $16

// MULFIRST sets X8, X9, X10 to the unreduced product X1*X2:
// X8 = a0*b0, X9 = a1*b1, X10 = a0*b1 + a1*b0.
#define MULFIRST \
	VPCLMULQDQ $0x00, X2, X1, X8 \
	VPCLMULQDQ $0x11, X2, X1, X9 \
	VPCLMULQDQ $0x01, X2, X1, X10 \
	VPCLMULQDQ $0x10, X2, X1, X3 \
	VPXOR      X3, X10, X10

// MULACC adds the unreduced product X1*X2 into X8, X9, X10.
#define MULACC \
	VPCLMULQDQ $0x00, X2, X1, X3 \
	VPXOR      X3, X8, X8 \
	VPCLMULQDQ $0x11, X2, X1, X3 \
	VPXOR      X3, X9, X9 \
	VPCLMULQDQ $0x01, X2, X1, X3 \
	VPXOR      X3, X10, X10 \
	VPCLMULQDQ $0x10, X2, X1, X3 \
	VPXOR      X3, X10, X10

// REDUCE(out) sets out = (X8 + X10*x^64 + X9*x^128) * x^-128 mod P:
// Montgomery reduction in two folds of 64 bits, each adding w*P for the
// lowest remaining qword w. It clobbers X3, X8, X9, X10.
#define REDUCE(out) \
	VPSLLDQ    $8, X10, X3 \
	VPSRLDQ    $8, X10, X10 \
	VPXOR      X3, X8, X8 \
	VPXOR      X10, X9, X9 \
	VPCLMULQDQ $0x00, X11, X8, X3 \
	VPSHUFD    $0x4e, X8, X8 \
	VPXOR      X3, X8, X8 \
	VPCLMULQDQ $0x00, X11, X8, X3 \
	VPSHUFD    $0x4e, X8, X8 \
	VPXOR      X3, X8, X8 \
	VPXOR      X9, X8, out

// func polyvalMulAsm(out, a, b *polyvalElem)
TEXT ·polyvalMulAsm(SB), NOSPLIT, $0-24
	MOVQ    out+0(FP), DI
	MOVQ    a+8(FP), SI
	MOVQ    b+16(FP), DX
	VMOVDQU polyvalPoly<>(SB), X11
	VMOVDQU (SI), X1
	VMOVDQU (DX), X2
	MULFIRST
	REDUCE(X0)
	VMOVDQU X0, (DI)
	VZEROUPPER
	RET

// DOT(a, b, out) sets out = dot(a, b) for registers a, b, out (none of
// X1, X2, X3, X8-X11).
#define DOT(a, b, out) \
	VMOVDQA a, X1 \
	VMOVDQA b, X2 \
	MULFIRST \
	REDUCE(out)

// func polyvalPowersAsm(pow *[8]polyvalElem)
// Sets pow[i] = H^(i+1) for i = 1..7 from pow[0] = H, in a tree of depth 3
// so that independent products overlap.
TEXT ·polyvalPowersAsm(SB), NOSPLIT, $0-8
	MOVQ    pow+0(FP), DI
	VMOVDQU polyvalPoly<>(SB), X11
	VMOVDQU (DI), X4
	DOT(X4, X4, X5)   // H^2
	DOT(X5, X4, X6)   // H^3
	DOT(X5, X5, X7)   // H^4
	DOT(X7, X4, X12)  // H^5
	DOT(X7, X5, X13)  // H^6
	DOT(X7, X6, X14)  // H^7
	DOT(X7, X7, X15)  // H^8
	VMOVDQU X5, 16(DI)
	VMOVDQU X6, 32(DI)
	VMOVDQU X7, 48(DI)
	VMOVDQU X12, 64(DI)
	VMOVDQU X13, 80(DI)
	VMOVDQU X14, 96(DI)
	VMOVDQU X15, 112(DI)
	VPXOR   X4, X4, X4
	VPXOR   X5, X5, X5
	VPXOR   X6, X6, X6
	VPXOR   X7, X7, X7
	VPXOR   X12, X12, X12
	VPXOR   X13, X13, X13
	VPXOR   X14, X14, X14
	VPXOR   X15, X15, X15
	VPXOR   X1, X1, X1
	VPXOR   X2, X2, X2
	VZEROUPPER
	RET

// func polyvalPowers2Asm(p, q *[8]polyvalElem)
// polyvalPowersAsm for two keys at once; their products are independent
// and overlap in the pipeline (CGO always rekeys two POLYVALs together).
TEXT ·polyvalPowers2Asm(SB), NOSPLIT, $0-16
	MOVQ    p+0(FP), DI
	MOVQ    q+8(FP), SI
	VMOVDQU polyvalPoly<>(SB), X11
	VMOVDQU (DI), X4
	VMOVDQU (SI), X12
	DOT(X4, X4, X5)    // p: H^2
	DOT(X12, X12, X13) // q: H^2
	DOT(X5, X4, X6)    // p: H^3
	DOT(X13, X12, X14) // q: H^3
	DOT(X5, X5, X7)    // p: H^4
	DOT(X13, X13, X15) // q: H^4
	VMOVDQU X5, 16(DI)
	VMOVDQU X13, 16(SI)
	VMOVDQU X6, 32(DI)
	VMOVDQU X14, 32(SI)
	VMOVDQU X7, 48(DI)
	VMOVDQU X15, 48(SI)
	DOT(X7, X4, X0)
	VMOVDQU X0, 64(DI)
	DOT(X15, X12, X0)
	VMOVDQU X0, 64(SI)
	DOT(X7, X5, X0)
	VMOVDQU X0, 80(DI)
	DOT(X15, X13, X0)
	VMOVDQU X0, 80(SI)
	DOT(X7, X6, X0)
	VMOVDQU X0, 96(DI)
	DOT(X15, X14, X0)
	VMOVDQU X0, 96(SI)
	DOT(X7, X7, X0)
	VMOVDQU X0, 112(DI)
	DOT(X15, X15, X0)
	VMOVDQU X0, 112(SI)
	VPXOR   X0, X0, X0
	VPXOR   X1, X1, X1
	VPXOR   X2, X2, X2
	VPXOR   X4, X4, X4
	VPXOR   X5, X5, X5
	VPXOR   X6, X6, X6
	VPXOR   X7, X7, X7
	VPXOR   X12, X12, X12
	VPXOR   X13, X13, X13
	VPXOR   X14, X14, X14
	VPXOR   X15, X15, X15
	VZEROUPPER
	RET

// func polyvalBlocksAsm(acc *polyvalElem, pow *[8]polyvalElem, data *byte, n int)
//
// Blocks are taken in chunks of m = min(8, remaining). For a chunk
// X_1..X_m and running sum S, the new sum is
//   dot(S + X_1, H^m) + dot(X_2, H^(m-1)) + ... + dot(X_m, H^1),
// computed as m unreduced products and one reduction. Whole chunks of 8
// run unrolled; a shorter last chunk runs in a loop.
TEXT ·polyvalBlocksAsm(SB), NOSPLIT, $0-32
	MOVQ    acc+0(FP), DI
	MOVQ    pow+8(FP), DX
	MOVQ    data+16(FP), SI
	MOVQ    n+24(FP), CX
	VMOVDQU (DI), X0
	VMOVDQU polyvalPoly<>(SB), X11

full:
	CMPQ    CX, $8
	JB      tail
	VMOVDQU 0(SI), X1
	VPXOR   X0, X1, X1
	VMOVDQU 112(DX), X2
	MULFIRST
	VMOVDQU 16(SI), X1
	VMOVDQU 96(DX), X2
	MULACC
	VMOVDQU 32(SI), X1
	VMOVDQU 80(DX), X2
	MULACC
	VMOVDQU 48(SI), X1
	VMOVDQU 64(DX), X2
	MULACC
	VMOVDQU 64(SI), X1
	VMOVDQU 48(DX), X2
	MULACC
	VMOVDQU 80(SI), X1
	VMOVDQU 32(DX), X2
	MULACC
	VMOVDQU 96(SI), X1
	VMOVDQU 16(DX), X2
	MULACC
	VMOVDQU 112(SI), X1
	VMOVDQU 0(DX), X2
	MULACC
	REDUCE(X0)
	ADDQ    $128, SI
	SUBQ    $8, CX
	JMP     full

tail:
	TESTQ   CX, CX
	JZ      done
	MOVQ    CX, R8
	SHLQ    $4, R8
	LEAQ    -16(DX)(R8*1), R8 // R8 = &pow[m-1]
	VMOVDQU (SI), X1
	VPXOR   X0, X1, X1
	VMOVDQU (R8), X2
	MULFIRST
	ADDQ    $16, SI
	SUBQ    $16, R8
	DECQ    CX
	JZ      tailreduce

tailloop:
	VMOVDQU (SI), X1
	VMOVDQU (R8), X2
	MULACC
	ADDQ    $16, SI
	SUBQ    $16, R8
	DECQ    CX
	JNZ     tailloop

tailreduce:
	REDUCE(X0)

done:
	VMOVDQU X0, (DI)
	VPXOR   X0, X0, X0
	VPXOR   X1, X1, X1
	VPXOR   X2, X2, X2
	VZEROUPPER
	RET

// func polyvalCGOTweakAsm(pow *[8]polyvalElem, h *[16]byte, body *[509]byte, out *polyvalElem, ad byte)
//
// POLYVAL of CGO's ET tweak H || AD || X_R, zero-padded to 32 blocks, where
// X_R = body[16:509], read in place from the cell body (no copy): tweak
// block j >= 2 is body[16j-1 : 16j+15]; block 1 is body[15:31] with its first
// byte replaced by AD; block 31 is body[493:509] shifted down two bytes,
// which brings in the two zero padding bytes. Every load stays inside the
// body. Four unrolled chunks of eight blocks, one reduction each.
TEXT ·polyvalCGOTweakAsm(SB), NOSPLIT, $0-33
	MOVQ    pow+0(FP), DX
	MOVQ    h+8(FP), AX
	MOVQ    body+16(FP), SI
	MOVQ    out+24(FP), DI
	MOVBQZX ad+32(FP), R8
	VMOVDQU polyvalPoly<>(SB), X11
	VMOVDQU (AX), X1
	VMOVDQU 112(DX), X2
	MULFIRST
	VMOVDQU 15(SI), X1
	VPINSRB $0, R8, X1, X1
	VMOVDQU 96(DX), X2
	MULACC
	VMOVDQU 31(SI), X1
	VMOVDQU 80(DX), X2
	MULACC
	VMOVDQU 47(SI), X1
	VMOVDQU 64(DX), X2
	MULACC
	VMOVDQU 63(SI), X1
	VMOVDQU 48(DX), X2
	MULACC
	VMOVDQU 79(SI), X1
	VMOVDQU 32(DX), X2
	MULACC
	VMOVDQU 95(SI), X1
	VMOVDQU 16(DX), X2
	MULACC
	VMOVDQU 111(SI), X1
	VMOVDQU 0(DX), X2
	MULACC
	REDUCE(X0)
	VMOVDQU 127(SI), X1
	VPXOR   X0, X1, X1
	VMOVDQU 112(DX), X2
	MULFIRST
	VMOVDQU 143(SI), X1
	VMOVDQU 96(DX), X2
	MULACC
	VMOVDQU 159(SI), X1
	VMOVDQU 80(DX), X2
	MULACC
	VMOVDQU 175(SI), X1
	VMOVDQU 64(DX), X2
	MULACC
	VMOVDQU 191(SI), X1
	VMOVDQU 48(DX), X2
	MULACC
	VMOVDQU 207(SI), X1
	VMOVDQU 32(DX), X2
	MULACC
	VMOVDQU 223(SI), X1
	VMOVDQU 16(DX), X2
	MULACC
	VMOVDQU 239(SI), X1
	VMOVDQU 0(DX), X2
	MULACC
	REDUCE(X0)
	VMOVDQU 255(SI), X1
	VPXOR   X0, X1, X1
	VMOVDQU 112(DX), X2
	MULFIRST
	VMOVDQU 271(SI), X1
	VMOVDQU 96(DX), X2
	MULACC
	VMOVDQU 287(SI), X1
	VMOVDQU 80(DX), X2
	MULACC
	VMOVDQU 303(SI), X1
	VMOVDQU 64(DX), X2
	MULACC
	VMOVDQU 319(SI), X1
	VMOVDQU 48(DX), X2
	MULACC
	VMOVDQU 335(SI), X1
	VMOVDQU 32(DX), X2
	MULACC
	VMOVDQU 351(SI), X1
	VMOVDQU 16(DX), X2
	MULACC
	VMOVDQU 367(SI), X1
	VMOVDQU 0(DX), X2
	MULACC
	REDUCE(X0)
	VMOVDQU 383(SI), X1
	VPXOR   X0, X1, X1
	VMOVDQU 112(DX), X2
	MULFIRST
	VMOVDQU 399(SI), X1
	VMOVDQU 96(DX), X2
	MULACC
	VMOVDQU 415(SI), X1
	VMOVDQU 80(DX), X2
	MULACC
	VMOVDQU 431(SI), X1
	VMOVDQU 64(DX), X2
	MULACC
	VMOVDQU 447(SI), X1
	VMOVDQU 48(DX), X2
	MULACC
	VMOVDQU 463(SI), X1
	VMOVDQU 32(DX), X2
	MULACC
	VMOVDQU 479(SI), X1
	VMOVDQU 16(DX), X2
	MULACC
	VMOVDQU 493(SI), X1
	VPSRLDQ $2, X1, X1
	VMOVDQU 0(DX), X2
	MULACC
	REDUCE(X0)
	VMOVDQU X0, (DI)
	VPXOR   X0, X0, X0
	VPXOR   X1, X1, X1
	VPXOR   X2, X2, X2
	VZEROUPPER
	RET
