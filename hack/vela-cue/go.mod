// Wrapper module: vela-cue, KubeVela's rendering of a component and its traits, built from CUE and
// KubeVela's workflow module at the versions github.com/oam-dev/kubevela v1.10.6 pins
// (hack/cluster/upstream.ts; test/integration/trait-cue.test.ts checks that they match).
module scoped-step.local/hack/vela-cue

go 1.26.0

require (
	cuelang.org/go v0.9.2
	github.com/kubevela/workflow v0.6.3-0.20250717221743-56b80cee4121
	k8s.io/klog/v2 v2.130.1
)

require (
	github.com/cockroachdb/apd/v3 v3.2.1 // indirect
	github.com/evanphx/json-patch v5.6.0+incompatible // indirect
	github.com/fxamacker/cbor/v2 v2.7.0 // indirect
	github.com/go-logr/logr v1.4.2 // indirect
	github.com/gogo/protobuf v1.3.2 // indirect
	github.com/google/gofuzz v1.2.0 // indirect
	github.com/google/uuid v1.6.0 // indirect
	github.com/json-iterator/go v1.1.12 // indirect
	github.com/modern-go/concurrent v0.0.0-20180306012644-bacd9c7ef1dd // indirect
	github.com/modern-go/reflect2 v1.0.2 // indirect
	github.com/pkg/errors v0.9.1 // indirect
	github.com/x448/float16 v0.8.4 // indirect
	golang.org/x/net v0.37.0 // indirect
	golang.org/x/text v0.23.0 // indirect
	gopkg.in/inf.v0 v0.9.1 // indirect
	gopkg.in/yaml.v3 v3.0.1 // indirect
	k8s.io/apimachinery v0.31.10 // indirect
	k8s.io/utils v0.0.0-20250604170112-4c0f3b243397 // indirect
	sigs.k8s.io/json v0.0.0-20221116044647-bc3834ca7abd // indirect
	sigs.k8s.io/structured-merge-diff/v4 v4.6.0 // indirect
	sigs.k8s.io/yaml v1.4.0 // indirect
)
