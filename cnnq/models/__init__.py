"""The model zoo: `registry` (names, checks, building), `classic` (tutorial nets), `torchvision_zoo`
(AlexNet/VGG/ResNet adapted to small and grayscale inputs), `weights` (local pretrained files) and
`describe` (layer-by-layer summaries)."""
