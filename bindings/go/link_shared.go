//go:build !loradock_static

package loradock

// Links the shared library of the repository's debug build, found at run time through an
// rpath. CGO_LDFLAGS (which go before these flags) may point elsewhere.

// #cgo LDFLAGS: -L${SRCDIR}/../../target/debug -lloradock -Wl,-rpath,${SRCDIR}/../../target/debug
import "C"
