from .handover import console

console()
