// The one program of an image without a shell: it prints its arguments and the names (never the
// values) of its environment variables, so a test can see it ran.
package main

import (
	"fmt"
	"os"
	"sort"
	"strings"
)

func main() {
	names := []string{}
	for _, kv := range os.Environ() {
		names = append(names, strings.SplitN(kv, "=", 2)[0])
	}
	sort.Strings(names)
	fmt.Printf("args: %s\nenv: %s\n", strings.Join(os.Args[1:], " "), strings.Join(names, " "))
}
