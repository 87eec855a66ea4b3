// SPDX-License-Identifier: GPL-2.0 OR Apache-2.0
// The XDP half of a colocated point-to-point link: every frame that enters
// one tap leaves through the other, without a bridge. The devmap (a hash, so
// that ifindexes of any size can be keys) maps each tap's ifindex to its
// peer's; a frame from an interface not in the map goes on to the stack.
#include <linux/bpf.h>

// The few libbpf definitions needed, so that building takes only clang and
// the kernel headers (no libbpf-dev).
#define SEC(name) __attribute__((section(name), used))
#define __uint(name, val) int (*name)[val]
#define __type(name, val) typeof(val) *name
static long (*bpf_redirect_map)(void *map, __u64 key, __u64 flags) = (void *)BPF_FUNC_redirect_map;

struct {
	__uint(type, BPF_MAP_TYPE_DEVMAP_HASH);
	__uint(max_entries, 2);
	__type(key, __u32);
	__type(value, struct bpf_devmap_val);
} REDIRECT SEC(".maps");

SEC("xdp")
int mx_redirect(struct xdp_md *ctx)
{
	return bpf_redirect_map(&REDIRECT, ctx->ingress_ifindex, XDP_PASS);
}

char LICENSE[] SEC("license") = "Dual BSD/GPL";
