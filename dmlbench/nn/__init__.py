"""Networks: timm backbones and the embedding model, the loss, and the building blocks
methods put into a backbone (adapters, prompts, the class-prompt bank)."""
