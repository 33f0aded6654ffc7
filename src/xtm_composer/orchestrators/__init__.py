"""Orchestrators (Docker first; Swarm, Portainer, Kubernetes later) behind one protocol."""
