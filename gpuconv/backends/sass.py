"""What a kernel's SASS says about its hot loop, without a GPU: the disassembly of a cubin
(``cuobjdump -sass``, from the ``nvidia-cuda-cuobjdump`` wheel) parsed into instructions,
its loops found from backward branches, and the hot loop's instruction mix counted.

The hot loop is the innermost backward-branch loop holding the most fused multiply-adds
(FFMA / DFMA): in a GEMM whose inner product is unrolled, the k-tile loop, barrier and
loads included. These figures are proxies: they say a loop is built right, not that it is
fast.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

_FUNCTION = re.compile(r"^\s*Function\s*:\s*(\S+)")
_INSTRUCTION = re.compile(r"/\*([0-9a-f]{4,})\*/\s+(.+?)\s*;")
_BRANCH = re.compile(r"^(?:@!?U?P\w+\s+)?BRA\b.*?(0x[0-9a-f]+)\s*$")


@dataclass(frozen=True)
class Instruction:
    address: int
    text: str

    @property
    def opcode(self) -> str:
        """The mnemonic with its modifiers (``FFMA``, ``LDS.128``, ``CALL.REL.NOINC``)."""
        words = self.text.split()
        return words[1] if words[0].startswith("@") else words[0]


def cuobjdump() -> str | None:
    """The cuobjdump executable: on PATH, or from the nvidia-cuda-cuobjdump wheel."""
    found = shutil.which("cuobjdump")
    if found:
        return found
    for site in sys.path:
        for candidate in Path(site).glob("nvidia/*/bin/cuobjdump"):
            return str(candidate)
    return None


def disassemble(cubin: bytes) -> str:
    """``cuobjdump -sass`` of a cubin."""
    tool = cuobjdump()
    if tool is None:
        raise FileNotFoundError("cuobjdump not found (pip install nvidia-cuda-cuobjdump)")
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "kernel.cubin"
        path.write_bytes(cubin)
        return subprocess.run([tool, "-sass", str(path)], check=True, capture_output=True,
                              text=True).stdout


def functions(sass: str) -> dict[str, list[Instruction]]:
    """Function name -> its instructions, in address order."""
    out: dict[str, list[Instruction]] = {}
    current = None
    for line in sass.splitlines():
        if m := _FUNCTION.match(line):
            current = out.setdefault(m.group(1), [])
        elif current is not None and (m := _INSTRUCTION.search(line)):
            current.append(Instruction(int(m.group(1), 16), m.group(2)))
    return out


def loops(code: list[Instruction]) -> list[tuple[int, int]]:
    """(first, last) index into ``code`` of every backward-branch loop."""
    index = {ins.address: i for i, ins in enumerate(code)}
    found = []
    for i, ins in enumerate(code):
        m = _BRANCH.match(ins.text)
        if m and int(m.group(1), 16) <= ins.address and int(m.group(1), 16) in index:
            found.append((index[int(m.group(1), 16)], i))
    return found


def is_fma(ins: Instruction) -> bool:
    return ins.opcode.split(".")[0] in ("FFMA", "DFMA")


def hot_loop(code: list[Instruction]) -> list[Instruction]:
    """The innermost loop (no other loop inside it) with the most FMAs; empty without loops."""
    spans = loops(code)
    innermost = [(a, b) for a, b in spans
                 if not any((a, b) != (c, d) and a <= c and d <= b for c, d in spans)]
    if not innermost:
        return []
    a, b = max(innermost, key=lambda s: (sum(is_fma(x) for x in code[s[0]:s[1] + 1]), s[1] - s[0]))
    return code[a:b + 1]


def report(code: list[Instruction]) -> dict:
    """The hot loop's mix and the whole function's local-memory use."""
    loop = hot_loop(code)

    def count(*prefixes):
        return sum(ins.opcode.split(".")[0] in prefixes for ins in loop)

    fma = sum(is_fma(ins) for ins in loop)
    return {
        "loop_instructions": len(loop),
        "loop_fma": fma,
        "loop_fma_share": round(fma / len(loop), 3) if loop else 0.0,
        "loop_calls": count("CALL"),
        "loop_mufu_rcp": sum(ins.opcode.startswith("MUFU.RCP") for ins in loop),
        "loop_barriers": count("BAR"),
        "loop_global_loads": count("LDG"),
        "loop_shared_loads": count("LDS"),
        "local_memory": sum(ins.opcode.split(".")[0] in ("LDL", "STL") for ins in code),
    }
