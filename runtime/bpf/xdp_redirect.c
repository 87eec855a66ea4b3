// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
// The XDP half of point-to-point links (two taps on a host, or a tap and
// its VTEP): every frame that enters one device leaves through its peer,
// without a bridge. One program and devmap serve all of an experiment's
// pairs in a namespace, so the verifier runs once, not once a pair. The
// devmap (a hash, so that ifindexes of any size can be keys) maps each
// device's ifindex to its peer's; a frame from an interface not in the map
// goes on to the stack. 16,384 entries: 8,192 pairs per host.
#include <linux/bpf.h>

// The few libbpf definitions needed, so that building takes only clang and
// the kernel headers (no libbpf-dev).
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 16384);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} REDIRECT SEC(".maps");

SEC("xdp")
int mx_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&REDIRECT, ctx->ingress_ifindex, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
