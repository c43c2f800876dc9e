"""One module per panel of the dock widget (model, segment, annotation, export, pretrain, fine-tune)."""
