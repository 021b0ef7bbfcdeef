#!/usr/bin/python3
"""Instructions per image by function from a callgrind profile.

    /usr/bin/python3 scripts/cg_funcs.py CALLGRIND_OUT IMAGES [TOP]

Sums callgrind_annotate's per-(file, function) lines by function (inlined
intrinsics headers count for the function they are inlined into), groups
libjpeg's stripped code by the address ranges of docs/PERFORMANCE.md, and
prints the top functions as instructions per image. Used for the resize
measurements in docs/PERFORMANCE.md ("Resize: measurements").
"""
import re
import subprocess
import sys


def libjpeg_part(addr):
    a = int(addr, 16)
    if 0x22570 <= a < 0x23ee0:
        return "libjpeg Huffman (jdhuff.c)"
    if a >= 0x3ac80:
        return "libjpeg SIMD (IDCT, upsample, colour)"
    if 0x1d1d0 <= a < 0x1f190:
        return "libjpeg jdcoefct.c"
    return "libjpeg other"


def table(path, inclusive):
    """{function: Ir} from callgrind_annotate's function table, and the total."""
    out = subprocess.run(["callgrind_annotate", "--threshold=100",
                          "--inclusive=" + ("yes" if inclusive else "no"), path],
                         check=True, stdout=subprocess.PIPE, text=True).stdout
    lines = out.splitlines()
    start = next(i for i, l in enumerate(lines) if l.rstrip().endswith("file:function"))
    total, funcs = 0, {}
    for line in lines:
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+PROGRAM TOTALS", line)
        if m:
            total = int(m.group(1).replace(",", ""))
    for line in lines[start + 2:]:
        if line.startswith("----"):
            break
        m = re.match(r"\s*([\d,]+) \(\s*[\d.]+%\)\s+(.*)$", line)
        if not m:
            continue
        n = int(m.group(1).replace(",", ""))
        what = m.group(2)
        if "PROGRAM TOTALS" in what:
            total = n
            continue
        what = re.sub(r"\s*\[.*\]$", "", what)
        lib = re.match(r"\?\?\?:0x([0-9a-f]+)$", what)
        if lib and "libjpeg" in line:
            name = libjpeg_part(lib.group(1))
        else:
            name = what.rsplit(":", 1)[-1]
        name = re.sub(r"\s*\(\d+x\)$", "", name)
        funcs[name] = funcs.get(name, 0) + n
    return funcs, total


def main():
    path, images = sys.argv[1], int(sys.argv[2])
    top = int(sys.argv[3]) if len(sys.argv) > 3 else 12
    funcs, total = table(path, False)
    incl, _ = table(path, True)
    # Inclusive costs (callgrind_annotate --inclusive=yes) can count a
    # function twice through inlining; the self-cost sums below are exact.
    for f in ("decoder_read", "resize_rgb", "resize_rgb_ex", "resize_rgb_crop", "mirror_rows",
              "augment_flip"):
        if f in incl:
            print("inclusive %-14s %8.3f M per image" % (f, incl[f] / images / 1e6))
    rs = sum(n for f, n in funcs.items() if f.startswith("resize_") or f == "mirror_rows")
    print("total %.2f M instructions per image (%d images); resize.c (self) %.3f M"
          % (total / images / 1e6, images, rs / images / 1e6))
    for name, n in sorted(funcs.items(), key=lambda kv: -kv[1])[:top]:
        print("%8.3f M  %5.1f%%  %s" % (n / images / 1e6, 100.0 * n / total, name))
    return 0


if __name__ == "__main__":
    sys.exit(main())
