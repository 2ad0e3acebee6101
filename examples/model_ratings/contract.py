"""Only certified, active models can be rated: the contract asks the model registry's certified
state in the same block (the runtime's certified_model)."""

from edgechain.sdk import Contract, OperationRejected

from . import ABI, Rate, Total
from .state import Rating, RatingsState


class RatingsContract(Contract):
    abi = ABI
    state_type = RatingsState

    def execute_operation(self, operation: Rate) -> Total:
        most = self.runtime.application_parameters.max_stars
        if not 1 <= operation.stars <= most:
            raise OperationRejected(f"stars must be in 1..{most}, got {operation.stars}")
        model = self.runtime.certified_model(operation.model, operation.version)
        if model is None or model.retired:
            raise OperationRejected(
                f"{operation.model} version {operation.version} is not a certified, active model"
            )
        rater = self.runtime.authenticated_signer
        self.state.ratings.push(
            Rating(rater, operation.model, operation.version, operation.prompt, operation.stars)
        )
        key = f"{operation.model}@{operation.version}"
        total = self.state.totals.get(key) or Total(0, 0)
        total = Total(total.count + 1, total.stars + operation.stars)
        self.state.totals.insert(key, total)
        return total
