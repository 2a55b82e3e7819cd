//go:build linux

package main

import "syscall"

// childSysProcAttr puts the child in a process group of its own, so that a
// lost lock stops the child and everything it started, and makes the kernel
// SIGKILL the child when dlock dies, so that the child never outlives the
// refreshes that keep its lock. Pdeathsig fires when the thread that
// started the child ends; cmdRun keeps that thread locked until the child
// has been reaped.
func childSysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
