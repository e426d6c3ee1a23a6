//go:build loradock_static

package loradock

// With -tags loradock_static: links the repository's static library instead (no run-time
// dependency on libloradock.so).

// #cgo LDFLAGS: ${SRCDIR}/../../target/debug/libloradock.a -lpthread -ldl -lm -lrt -lgcc_s -lutil
import "C"
