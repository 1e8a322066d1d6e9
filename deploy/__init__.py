"""Deployment files: Kubernetes manifests (k8s/) and the offline renderer (render.py)."""
