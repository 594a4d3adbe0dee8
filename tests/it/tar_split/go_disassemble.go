// The reference for tests/it/tar_split.rs: vbatts/tar-split's own
// disassembler (as containers/storage runs it at import), reading a tar on
// standard input and writing the tar-split's JSON lines (uncompressed) on
// standard output. Built by the test in GOPATH mode from Debian's
// golang-github-vbatts-tar-split-dev sources.
package main

import (
	"io"
	"os"

	"github.com/vbatts/tar-split/tar/asm"
	"github.com/vbatts/tar-split/tar/storage"
)

func main() {
	p := storage.NewJSONPacker(os.Stdout)
	r, err := asm.NewInputTarStream(os.Stdin, p, storage.NewDiscardFilePutter())
	if err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(1)
	}
	if _, err := io.Copy(io.Discard, r); err != nil {
		os.Stderr.WriteString(err.Error())
		os.Exit(1)
	}
}
