package main

import (
	"os"
	"strings"
	"syscall"
)

// jemallocConf keeps freed pages in the process for reuse (see reexecWithRuntimeEnvironment).
const jemallocConf = "dirty_decay_ms:-1,muzzy_decay_ms:-1"

// jemallocPaths are where Debian and Ubuntu install libjemalloc2.
var jemallocPaths = []string{
	"/usr/lib/x86_64-linux-gnu/libjemalloc.so.2",
	"/usr/lib/aarch64-linux-gnu/libjemalloc.so.2",
}

// reexecWithRuntimeEnvironment restarts the process once, before anything else runs, with the
// environment libtorch needs to be fast here; both settings are read by libraries when they load,
// so setting them later in the process would be too late:
//   - LD_PRELOAD=libjemalloc.so.2: with glibc malloc, libtorch is 4-9x slower on these machines
//     (each large tensor is returned to the kernel and page-faulted back in);
//   - MALLOC_CONF=dirty_decay_ms:-1,muzzy_decay_ms:-1: jemalloc at its defaults still hands freed
//     pages back to the kernel, and a ResNet-50 batch then spends as long in page faults as in
//     arithmetic (11.6 against 22.2 images/s, 12.7 against 0.4 s of system time); the price is a
//     resident set that stays at its peak (about +20% for ResNet-50);
//   - OMP_WAIT_POLICY=PASSIVE: OpenMP workers that spin while waiting make a forward pass up to
//     100x slower when other work (ingest, other processes) shares the cores.
//
// A variable the user has set is left alone, and so is a machine without jemalloc.
func reexecWithRuntimeEnvironment() {
	changed := false
	if _, set := os.LookupEnv("OMP_WAIT_POLICY"); !set {
		os.Setenv("OMP_WAIT_POLICY", "PASSIVE")
		changed = true
	}
	if preload, set := os.LookupEnv("LD_PRELOAD"); !set || !strings.Contains(preload, "jemalloc") {
		for _, path := range jemallocPaths {
			if _, err := os.Stat(path); err == nil && !set {
				os.Setenv("LD_PRELOAD", path)
				changed = true
				break
			}
		}
	}
	if _, set := os.LookupEnv("MALLOC_CONF"); !set && strings.Contains(os.Getenv("LD_PRELOAD"), "jemalloc") {
		os.Setenv("MALLOC_CONF", jemallocConf)
		changed = true
	}
	if !changed {
		return
	}
	executable, err := os.Executable()
	if err != nil {
		return
	}
	// Exec only returns on failure; then the process simply runs slower.
	_ = syscall.Exec(executable, os.Args, os.Environ())
}
