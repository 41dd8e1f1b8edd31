// The static programs of the images the local node runs (hack/cluster/images.ts): the pause
// program every pod sandbox holds, and a program for an image with no shell.
module scoped-step.local/hack/node-images

go 1.26.0
