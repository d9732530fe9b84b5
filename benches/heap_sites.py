#!/usr/bin/env python3
"""Where the live heap is, from a jemalloc heap profile of warmline: the allocation sites
holding the most bytes, each with the first frames above the allocator.

  heap_sites.py PROFILE.heap BINARY [TOP [FRAMES]]

Getting a profile (a release build with jemalloc's profiler, a dump per 2 MB allocated):
  cargo build --release --bin warmline --features tikv-jemallocator/profiling
  _RJEM_MALLOC_CONF=prof:true,lg_prof_sample:12,prof_prefix:/tmp/wl,lg_prof_interval:21 \\
      target/release/warmline run ...
then pass the newest /tmp/wl.*.heap. jeprof's text report put most bytes on
prof_backtrace_impl here; this reads the stacks itself and symbolizes them with addr2line
(the binary is position-independent: addresses are taken relative to its first mapping).
Byte counts are the profile's sampled counts: compare sites within one profile, or take
lg_prof_sample:0 (every allocation, exact; slow) for bytes per call. BASE=EARLIER.heap
subtracts an earlier profile of the same process."""
import collections
import os
import re
import subprocess
import sys

path, binary = sys.argv[1], sys.argv[2]
top = int(sys.argv[3]) if len(sys.argv) > 3 else 20
frames = int(sys.argv[4]) if len(sys.argv) > 4 else 5

def read(path):
    """The profile's stacks with their live bytes, and the binary's mappings."""
    stacks, maps, cur, in_maps = [], [], None, False
    for line in open(path):
        if line.startswith("MAPPED_LIBRARIES"):
            in_maps = True
        elif in_maps:
            f = line.split()
            if len(f) >= 6 and f[5].endswith("/" + binary.split("/")[-1]):
                lo, hi = (int(x, 16) for x in f[0].split("-"))
                maps.append((lo, hi, int(f[2], 16)))
        elif line.startswith("@"):
            cur = tuple(int(x, 16) for x in line.split()[1:])
        elif cur is not None and line.strip().startswith("t*:"):
            stacks.append((cur, int(re.match(r"\s*t\*:\s*\d+:\s*(\d+)", line).group(1))))
            cur = None
    return stacks, maps


stacks, maps = read(path)
if not maps:
    sys.exit(f"{binary} is not mapped in {path}")
base = min(lo - off for lo, _, off in maps)

# The allocator's own frames, and the generic ones above them (Box, Vec, Arc, spawn).
NOISE = re.compile(r"^(alloc::|core::|std::|<alloc|<core|__rust|_rjem|je_|prof_|imalloc|malloc)|"
                   r"alloc|Box|new_uninit|^new$|^new<|^pin<|^spawn<|^bind_new|^unowned|"
                   r"from_elem|^from<|^into<|channel")
sites = collections.Counter()
for stack, size in stacks:
    sites[stack[4:14]] += size
# BASE: an earlier profile of the same process (same mappings); what it held is taken
# away, so that what a load added stands out (growth per call, not start-up).
if os.environ.get("BASE"):
    for stack, size in read(os.environ["BASE"])[0]:
        sites[stack[4:14]] -= size
print(f"{sum(v for v in sites.values()) / 1024:9.0f} KB in all")
for stack, size in sites.most_common(top):
    addrs = [hex(a - base - 1) for a in stack if any(lo <= a < hi for lo, hi, _ in maps)]
    out = subprocess.run(["addr2line", "-f", "-C", "-i", "-e", binary, *addrs],
                         capture_output=True, text=True).stdout.split("\n")
    names = [out[i] for i in range(0, len(out) - 1, 2)]
    print(f"{size / 1024:9.0f} KB")
    for name in [n for n in names if "::" in n or "{" in n if not NOISE.search(n)][:frames]:
        print("    ", name[:150])
