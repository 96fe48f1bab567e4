package main

import (
	"os"
	"strings"
	"syscall"
)

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
