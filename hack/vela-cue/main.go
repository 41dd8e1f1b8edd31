// vela-cue renders one component of a KubeVela Application, with its traits, as KubeVela's
// application controller does (github.com/oam-dev/kubevela v1.10.6: pkg/appfile's
// GenerateComponentManifest, pkg/cue/definition's workload and trait Complete), with the same CUE
// module and the same rendering context (github.com/kubevela/workflow's pkg/cue/process) at the
// versions that KubeVela release pins. It reads one JSON request on stdin:
//
//	{"application": <Application>, "component": "api",
//	 "definitions": {"webservice": "<CUE template>", "scoped-identity": "<CUE template>"}}
//
// and writes {"output": <workload>, "outputs": {<name>: <object>}, "traits": [{"type", "parameter"}]}
// on stdout, or CUE's error on stderr with exit code 1.
//
// Beyond KubeVela, which only unifies a trait's properties with its template and reports
// conflicts, every trait's `parameter` must be concrete once its defaults are filled in: a trait
// missing a required property passes KubeVela's controller but not the JSON Schema the scoped-step
// controller validates it with, and this program is the check of that one template.
package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"

	"cuelang.org/go/cue"
	"cuelang.org/go/cue/build"
	"cuelang.org/go/cue/cuecontext"
	cueerrors "cuelang.org/go/cue/errors"
	"cuelang.org/go/cue/parser"
	"github.com/kubevela/workflow/pkg/cue/model"
	"github.com/kubevela/workflow/pkg/cue/model/sets"
	"github.com/kubevela/workflow/pkg/cue/process"
	"k8s.io/klog/v2"
)

type component struct {
	Name       string         `json:"name"`
	Type       string         `json:"type"`
	Properties map[string]any `json:"properties,omitempty"`
	Traits     []struct {
		Type       string         `json:"type"`
		Properties map[string]any `json:"properties,omitempty"`
	} `json:"traits,omitempty"`
}

type request struct {
	Application struct {
		Metadata struct {
			Name        string            `json:"name"`
			Namespace   string            `json:"namespace"`
			Labels      map[string]string `json:"labels"`
			Annotations map[string]string `json:"annotations"`
		} `json:"metadata"`
		Spec struct {
			Components []json.RawMessage `json:"components"`
		} `json:"spec"`
	} `json:"application"`
	Component   string            `json:"component"`
	Definitions map[string]string `json:"definitions"`
	// The API server's version (its /version), which vela-core reads at start-up.
	ClusterVersion struct {
		Major      string `json:"major"`
		Minor      string `json:"minor"`
		GitVersion string `json:"gitVersion"`
		Platform   string `json:"platform"`
	} `json:"clusterVersion"`
}

type renderedTrait struct {
	Type      string          `json:"type"`
	Parameter json.RawMessage `json:"parameter"`
}

type result struct {
	Output  map[string]any            `json:"output"`
	Outputs map[string]map[string]any `json:"outputs"`
	Traits  []renderedTrait           `json:"traits"`
}

func main() {
	// The workflow module logs a failed conversion with the whole CUE value; the error says enough.
	klog.LogToStderr(false)
	klog.SetOutput(io.Discard)
	var req request
	if err := json.NewDecoder(os.Stdin).Decode(&req); err != nil {
		fail(fmt.Errorf("reading the request: %w", err))
	}
	res, err := render(req)
	if err != nil {
		fail(err)
	}
	out := json.NewEncoder(os.Stdout)
	out.SetIndent("", "  ")
	if err := out.Encode(res); err != nil {
		fail(err)
	}
}

func fail(err error) {
	fmt.Fprintln(os.Stderr, err)
	os.Exit(1)
}

// cueError keeps every error CUE reports, each with its path and position, not only the first.
func cueError(err error, format string, args ...any) error {
	return fmt.Errorf("%s:\n%s", fmt.Sprintf(format, args...), strings.TrimSpace(cueerrors.Details(err, nil)))
}

func render(req request) (*result, error) {
	app := req.Application
	var comp *component
	for _, raw := range app.Spec.Components {
		var c component
		if err := json.Unmarshal(raw, &c); err != nil {
			return nil, fmt.Errorf("component: %w", err)
		}
		if c.Name == req.Component {
			comp = &c
		}
	}
	if comp == nil {
		return nil, fmt.Errorf("no component %q in Application %s", req.Component, app.Metadata.Name)
	}
	namespace := app.Metadata.Namespace
	if namespace == "" {
		namespace = "default" // GenerateComponentManifest
	}
	// The first revision of a new Application, as the controller names it.
	appRevision := app.Metadata.Name + "-v1"
	annotations := app.Metadata.Annotations

	// pkg/cue/process NewContext (KubeVela's own fields over the workflow module's context).
	pctx := process.NewContext(process.ContextData{
		Name:           comp.Name,
		Namespace:      namespace,
		WorkflowName:   annotations["app.oam.dev/workflowName"],
		PublishVersion: annotations["app.oam.dev/publishVersion"],
		Ctx:            context.Background(),
	})
	components := make([]any, 0, len(app.Spec.Components))
	for _, raw := range app.Spec.Components {
		var c any
		_ = json.Unmarshal(raw, &c)
		components = append(components, c)
	}
	pctx.PushData("appName", app.Metadata.Name)
	pctx.PushData("appRevision", appRevision)
	// The controller puts the component's spec hash here; no template of ours reads it.
	pctx.PushData("revision", comp.Name+"-v1")
	pctx.PushData("components", components)
	pctx.PushData("appLabels", app.Metadata.Labels)
	pctx.PushData("appAnnotations", annotations)
	pctx.PushData("replicaKey", "")
	pctx.PushData("appRevisionNum", int64(1))
	pctx.PushData("cluster", "local")
	cv := req.ClusterVersion
	minor, _ := strconv.ParseInt(strings.TrimRight(strings.TrimSpace(cv.Minor), ".+-/?!"), 10, 64)
	pctx.PushData("clusterVersion", map[string]any{"major": cv.Major, "gitVersion": cv.GitVersion, "platform": cv.Platform, "minor": minor})
	if comp.Properties != nil {
		pctx.SetParameters(comp.Properties) // NewBasicContext
	}

	workloadTemplate, ok := req.Definitions[comp.Type]
	if !ok {
		return nil, fmt.Errorf("no definition for component type %q", comp.Type)
	}
	if err := completeWorkload(pctx, comp.Type, workloadTemplate, comp.Properties); err != nil {
		return nil, err
	}
	pctx.PushData("componentType", comp.Type)

	res := &result{Outputs: map[string]map[string]any{}, Traits: []renderedTrait{}}
	for _, tr := range comp.Traits {
		name := strings.SplitN(tr.Type, "@", 2)[0]
		template, ok := req.Definitions[name]
		if !ok {
			return nil, fmt.Errorf("no definition for trait type %q", tr.Type)
		}
		parameter, err := completeTrait(pctx, name, template, tr.Properties)
		if err != nil {
			return nil, err
		}
		res.Traits = append(res.Traits, renderedTrait{Type: tr.Type, Parameter: parameter})
	}

	base, auxiliaries := pctx.Output()
	workload, err := base.Unstructured()
	if err != nil {
		return nil, cueError(err, "the workload of component %s", comp.Name)
	}
	res.Output = workload.Object
	for _, aux := range auxiliaries {
		obj, err := aux.Ins.Unstructured()
		if err != nil {
			return nil, cueError(err, "outputs.%s of %s", aux.Name, aux.Type)
		}
		res.Outputs[aux.Name] = obj.Object
	}
	return res, nil
}

// compile is cuex's CompileString without provider functions (no template here calls one): one
// file, KubeVela's, built as an instance so that `import "strings"` and the like resolve.
func compile(src string) (cue.Value, error) {
	bi := build.NewContext().NewInstance("", nil)
	f, err := parser.ParseFile("-", src, parser.ParseComments)
	if err != nil {
		return cue.Value{}, err
	}
	if err := bi.AddSyntax(f); err != nil {
		return cue.Value{}, err
	}
	// As cuex, no error check here: Validate, next, reports every error of the value.
	return cuecontext.New().BuildInstance(bi), nil
}

func parameterFile(params map[string]any) (string, error) {
	if params == nil {
		return "", nil
	}
	bt, err := json.Marshal(params)
	if err != nil {
		return "", err
	}
	return "parameter: " + string(bt), nil
}

// completeWorkload is pkg/cue/definition workloadDef.Complete.
func completeWorkload(pctx process.Context, name, template string, params map[string]any) error {
	paramFile := "parameter: {}"
	if p, err := parameterFile(params); err != nil {
		return err
	} else if p != "" {
		paramFile = p
	}
	c, err := pctx.BaseContextFile()
	if err != nil {
		return err
	}
	val, err := compile(strings.Join([]string{template + "\ncontext: _\nparameter: _\n", paramFile, c}, "\n"))
	if err != nil {
		return cueError(err, "failed to compile workload %s after merge parameter and context", name)
	}
	if err := val.Validate(); err != nil {
		return cueError(err, "invalid cue template of workload %s after merge parameter and context", name)
	}
	base, _ := model.NewBase(val.LookupPath(cue.ParsePath("output")))
	if err := pctx.SetBase(base); err != nil {
		return err
	}
	return appendOutputs(pctx, val, "AuxiliaryWorkload", "workload "+name)
}

// completeTrait is pkg/cue/definition traitDef.Complete; it returns the trait's parameter, concrete.
func completeTrait(pctx process.Context, name, template string, params map[string]any) (json.RawMessage, error) {
	buff := template + "\n"
	p, err := parameterFile(params)
	if err != nil {
		return nil, err
	}
	if p != "" {
		buff += p + "\n"
	}
	c, err := pctx.BaseContextFile()
	if err != nil {
		return nil, err
	}
	val, err := compile(buff + c)
	if err != nil {
		return nil, cueError(err, "failed to compile trait %s after merge parameter and context", name)
	}
	if err := val.Validate(); err != nil {
		return nil, cueError(err, "invalid template of trait %s after merge with parameter and context", name)
	}
	if val.LookupPath(cue.ParsePath("processing")).Exists() {
		return nil, fmt.Errorf("trait %s: `processing` (HTTP calls while rendering) is not rendered here", name)
	}
	if err := appendOutputs(pctx, val, name, "trait "+name); err != nil {
		return nil, err
	}
	base, auxiliaries := pctx.Output()
	if patcher := val.LookupPath(cue.ParsePath("patch")); patcher.Exists() {
		if base == nil {
			return nil, fmt.Errorf("patch trait %s into an invalid workload", name)
		}
		if err := base.Unify(patcher, sets.CreateUnifyOptionsForPatcher(patcher)...); err != nil {
			return nil, cueError(err, "invalid patch trait %s into workload", name)
		}
	}
	if outputsPatcher := val.LookupPath(cue.ParsePath("patchOutputs")); outputsPatcher.Exists() {
		for _, aux := range auxiliaries {
			target := outputsPatcher.LookupPath(cue.MakePath(cue.Str(aux.Name)))
			if !target.Exists() {
				continue
			}
			if err := aux.Ins.Unify(target); err != nil {
				return nil, cueError(err, "trait=%s, to=%s, invalid patch trait into auxiliary workload", name, aux.Name)
			}
		}
	}
	if errs := val.LookupPath(cue.ParsePath("errs")); errs.Exists() {
		if it, err := errs.List(); err == nil {
			for it.Next() {
				if s, err := it.Value().String(); err == nil && s != "" {
					return nil, fmt.Errorf("trait %s: %s", name, s)
				}
			}
		}
	}
	parameter := val.LookupPath(cue.ParsePath("parameter"))
	if err := parameter.Validate(cue.Concrete(true)); err != nil {
		return nil, cueError(err, "trait %s: the parameter is incomplete (KubeVela renders it, the scoped-step controller refuses it)", name)
	}
	return parameter.MarshalJSON()
}

func appendOutputs(pctx process.Context, val cue.Value, auxType, what string) error {
	outputs := val.LookupPath(cue.ParsePath("outputs"))
	if !outputs.Exists() {
		return nil
	}
	iter, err := outputs.Fields(cue.Definitions(true), cue.Hidden(true), cue.All())
	if err != nil {
		return cueError(err, "invalid outputs of %s", what)
	}
	for iter.Next() {
		if iter.Selector().IsDefinition() || iter.Selector().PkgPath() != "" || iter.IsOptional() {
			continue
		}
		other, _ := model.NewOther(iter.Value())
		if err := pctx.AppendAuxiliaries(process.Auxiliary{Ins: other, Type: auxType, Name: iter.Label()}); err != nil {
			return err
		}
	}
	return nil
}
