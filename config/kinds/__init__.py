"""One module per kind of check: its config model beside its validation."""
