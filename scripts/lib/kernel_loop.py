#!/usr/bin/env python3
"""The hot loop of a kernel, cut out of a disassembly for llvm-mca.

Reads `objdump -d -l -C --no-show-raw-insn` on stdin. Among the functions whose body holds a
line matching MARKER (an inlined function's header, as objdump -l prints it), finds the loops
(a backward branch to an address of the same function) that hold at least MIN instructions
matching FMA, and prints the smallest of them, the innermost such loop, one instruction a line,
without its branches (llvm-mca repeats the block itself) and without objdump's `<symbol>`
comments. Writes what it took (function, address, size, FMAs) to stderr; exits 1 when no
function or loop matches.

Usage: kernel_loop.py MARKER FMA MIN < disassembly > loop.s
Used by scripts/check-aarch64.sh --mca.
"""
import re
import sys

BRANCH = re.compile(r"^(j[a-z]+|b\.[a-z]+|b|cbn?z|tbn?z)\s")
TARGET = re.compile(r"\b([0-9a-f]+) <")
HEADER = re.compile(r"^([0-9a-f]+) <(.*)>:$")
INSN = re.compile(r"^\s+([0-9a-f]+):\s+(\S.*)$")


def functions(lines, marker):
    """(name, holds marker, [(address, instruction)]) for each function of the disassembly."""
    name, marked, body = None, False, []
    for line in lines:
        line = line.rstrip("\n")
        header = HEADER.match(line)
        if header:
            if name is not None:
                yield name, marked, body
            name, marked, body = header.group(2), False, []
            continue
        insn = INSN.match(line)
        if insn:
            body.append((int(insn.group(1), 16), insn.group(2).strip()))
        elif marker.search(line):
            marked = True
    if name is not None:
        yield name, marked, body


def loops(body):
    """Each loop of a function: (start address, its instructions, branches included)."""
    index = {address: i for i, (address, _) in enumerate(body)}
    for i, (address, text) in enumerate(body):
        if not BRANCH.match(text):
            continue
        target = TARGET.search(text)
        if target is None:
            continue
        start = int(target.group(1), 16)
        if start < address and start in index:
            yield start, [t for _, t in body[index[start] : i + 1]]


def main(marker, fma, least):
    best = None
    for name, marked, body in functions(sys.stdin, marker):
        if not marked:
            continue
        for start, insns in loops(body):
            fmas = sum(1 for t in insns if fma.search(t))
            if fmas >= least and (best is None or len(insns) < len(best[2])):
                best = (name, start, insns, fmas)
    if best is None:
        sys.exit(f"kernel_loop: no loop with >= {least} instructions matching {fma.pattern!r} "
                 f"in a function holding {marker.pattern!r}")
    name, start, insns, fmas = best
    kept = [re.sub(r"\s+<[^>]*>$", "", t) for t in insns if not BRANCH.match(t)]
    sys.stderr.write(f"kernel_loop: {name} at 0x{start:x}: {len(kept)} instructions, {fmas} FMAs\n")
    print("\n".join(kept))


if __name__ == "__main__":
    if len(sys.argv) != 4:
        sys.exit(__doc__)
    main(re.compile(sys.argv[1]), re.compile(sys.argv[2]), int(sys.argv[3]))
