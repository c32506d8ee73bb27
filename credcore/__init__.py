"""credcore: the small shared package every other credgate package may import.

It holds what several packages need and nothing that knows about them: code validation
(USCC, GB 11643 ID numbers), the error hierarchy, canonical JSON and the injected clock.
It imports no other credgate package.
"""
