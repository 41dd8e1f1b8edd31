// The one program of an image without a shell: it prints its arguments and the names (never the
// values) of its environment variables, so a test can see it ran. An argument
// --write=<path>=<text> also writes text to path (a step's result file, say), and --exit=<n>
// makes it exit with n.
package main

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"strings"
)

func main() {
	names := []string{}
	for _, kv := range os.Environ() {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	sort.Strings(names)
	fmt.Printf("args: %s\nenv: %s\n", strings.Join(os.Args[1:], " "), strings.Join(names, " "))
	code := 0
	for _, a := range os.Args[1:] {
		if w, ok := strings.CutPrefix(a, "--write="); ok {
			path, text, _ := strings.Cut(w, "=")
			if err := os.WriteFile(path, []byte(text), 0o644); err != nil {
				fmt.Fprintln(os.Stderr, err)
				code = 1
			}
		}
		if e, ok := strings.CutPrefix(a, "--exit="); ok {
			if n, err := strconv.Atoi(e); err == nil {
				code = n
			}
		}
	}
	os.Exit(code)
}
