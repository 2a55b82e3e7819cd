//go:build unix && !linux

package main

import "syscall"

// childSysProcAttr puts the child in a process group of its own, so that a
// lost lock stops the child and everything it started.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
